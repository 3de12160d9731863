import { channelHeader, endpointRefusal, headerRefusal, MAX_CHANNEL_HEADER_LENGTH, MAX_CHANNEL_HEADERS } from './subscription-endpoint';

describe('endpointRefusal', () => {
  const prod = { endpointAllow: ['https://hooks.hospital-b.example/fhir/'], allowLoopback: false };
  const test = { ...prod, allowLoopback: true };

  it.each([
    ['https://hooks.hospital-b.example/fhir/notify', prod],
    ['https://hooks.hospital-b.example/fhir/', prod],
    ['http://127.0.0.1:8123/hook', test],
    ['http://localhost:8123/hook', test],
    ['http://[::1]:8123/hook', test],
  ])('allows %s', (endpoint, config) => {
    expect(endpointRefusal(endpoint, config)).toBeUndefined();
  });

  it.each([
    [undefined, 'required'],
    ['not a url', 'not an absolute URL'],
    ['ftp://hooks.hospital-b.example/fhir/x', 'http(s)'],
    ['https://user:pw@hooks.hospital-b.example/fhir/x', 'credentials'],
    ['https://hooks.hospital-b.example.evil/fhir/x', 'not among'],
    ['https://hooks.hospital-b.example/other', 'not among'],
    ['https://hooks.hospital-b.example/fhir/../admin', 'not among'],
    ['http://127.0.0.1:8123/hook', 'not among'],
    ['http://localhost/hook', 'not among'],
    ['http://169.254.169.254/latest/meta-data', 'not among'],
  ])('refuses %s in production', (endpoint, why) => {
    expect(endpointRefusal(endpoint, prod)).toContain(why);
  });
});

describe('headerRefusal', () => {
  it.each([[undefined], [[]], [['X-Tenant: clinic-b']], [['Authorization: Bearer abc.def', 'X-Empty:', 'X-Tab:\tvalue with spaces']]])('allows %j', (headers) => {
    expect(headerRefusal(headers)).toBeUndefined();
  });

  it.each([
    [['X-A: b\r\nHost: evil'], 0, 'one \'Name: value\' line'],
    [['X-Ok: 1', 'no colon'], 1, 'one \'Name: value\' line'],
    [['X-A: b\u0000'], 0, 'one \'Name: value\' line'],
    [['Bad Name: x'], 0, 'one \'Name: value\' line'],
    [[': x'], 0, 'one \'Name: value\' line'],
    [['x-notification-id: forged'], 0, 'may not set x-notification-id'],
    [['X-Signature: t=1,v1=00'], 0, 'may not set X-Signature'],
    [['Host: internal.example'], 0, 'may not set Host'],
    [['Transfer-Encoding: chunked'], 0, 'may not set Transfer-Encoding'],
    [[42], 0, 'must be a text'],
    [[`X-Long: ${'a'.repeat(MAX_CHANNEL_HEADER_LENGTH)}`], 0, 'must be a text'],
    [Array.from({ length: MAX_CHANNEL_HEADERS + 1 }, (_, i) => `X-H${i}: v`), MAX_CHANNEL_HEADERS, `at most ${MAX_CHANNEL_HEADERS}`],
  ])('refuses %j (line %i)', (headers, index, why) => {
    const refusal = headerRefusal(headers as unknown[]);
    expect(refusal?.[1]).toBe(index);
    expect(refusal?.[0]).toContain(why);
  });
});

describe('channelHeader', () => {
  it.each([
    ['X-Tenant: clinic-b', ['X-Tenant', 'clinic-b']],
    ['X-Empty:', ['X-Empty', '']],
    ['X-Notification-Id: forged', undefined],
    ['no colon', undefined],
    ['X-A: b\r\nHost: evil', undefined],
  ])('reads %j as %j', (line, expected) => {
    expect(channelHeader(line)).toEqual(expected);
  });
});
