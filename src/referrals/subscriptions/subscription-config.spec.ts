import { createHmac } from 'node:crypto';
import { loadSubscriptionConfig } from './subscription-config';
import { signature } from './subscription-delivery.job';

describe('loadSubscriptionConfig', () => {
  it('reads the allow-list and allows loopback only in development and test', () => {
    const prod = loadSubscriptionConfig({ NODE_ENV: 'production', SUBSCRIPTION_ENDPOINT_ALLOW: 'https://a.example/hooks/, https://b.example/' });
    expect(prod.endpointAllow).toEqual(['https://a.example/hooks/', 'https://b.example/']);
    expect(prod.allowLoopback).toBe(false);
    expect(loadSubscriptionConfig({ NODE_ENV: 'test' }).allowLoopback).toBe(true);
    expect(loadSubscriptionConfig({ NODE_ENV: 'development' }).allowLoopback).toBe(true);
    expect(loadSubscriptionConfig({}).errorAfterFailures).toBe(5);
  });

  it.each([
    ['https://a.example', 'must be an http(s) URL ending its host with /'],
    ['ftp://a.example/', 'must be an http(s) URL ending its host with /'],
    ['a.example/', 'is not an absolute URL'],
  ])('refuses the prefix %s at start', (prefix, why) => {
    expect(() => loadSubscriptionConfig({ SUBSCRIPTION_ENDPOINT_ALLOW: prefix })).toThrow(why);
  });

  it('reads the match job settings: 200 writes per batch, a 500 ms poll (50 ms the shortest) and a 60 s lease by default', () => {
    expect(loadSubscriptionConfig({})).toMatchObject({ matchBatchSize: 200, matchPollMs: 500, matchLeaseSeconds: 60 });
    expect(loadSubscriptionConfig({ SUBSCRIPTION_MATCH_BATCH_SIZE: '50', SUBSCRIPTION_MATCH_POLL_MS: '100', SUBSCRIPTION_MATCH_LEASE_SECONDS: '5' })).toMatchObject({ matchBatchSize: 50, matchPollMs: 100, matchLeaseSeconds: 5 });
    expect(() => loadSubscriptionConfig({ SUBSCRIPTION_MATCH_POLL_MS: '10' })).toThrow('SUBSCRIPTION_MATCH_POLL_MS must be an integer from 50 to 60000');
    expect(() => loadSubscriptionConfig({ SUBSCRIPTION_MATCH_LEASE_SECONDS: '1' })).toThrow('SUBSCRIPTION_MATCH_LEASE_SECONDS must be an integer from 2 to 3600');
    expect(() => loadSubscriptionConfig({ SUBSCRIPTION_MATCH_BATCH_SIZE: '0' })).toThrow('SUBSCRIPTION_MATCH_BATCH_SIZE must be an integer from 1 to 1000');
  });

  it('refuses a failure count out of range', () => {
    expect(() => loadSubscriptionConfig({ SUBSCRIPTION_ERROR_AFTER_FAILURES: '0' })).toThrow('SUBSCRIPTION_ERROR_AFTER_FAILURES must be an integer from 1 to 1000');
  });
});

describe('signature', () => {
  it('is t=<unix>,v1=<hex HMAC-SHA256 of "t.body">', () => {
    const expected = createHmac('sha256', 'k'.repeat(16)).update('1700000000.{"a":1}').digest('hex');
    expect(signature('k'.repeat(16), 1_700_000_000, '{"a":1}')).toBe(`t=1700000000,v1=${expected}`);
    expect(signature('k'.repeat(16), 1_700_000_000, '')).toMatch(/^t=1700000000,v1=[0-9a-f]{64}$/);
  });
});
