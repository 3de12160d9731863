import { endpointRefusal } from './subscription-endpoint';

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
