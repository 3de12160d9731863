import request from 'supertest';
import { registerTestClient } from '../support/auth';
import { createTestApp, TestApp } from '../support/test-app';

/**
 * Route inventory: every HTTP route and whether it answers without a token. A change here is a
 * security review. Public routes say why in their @Public decorator.
 */
const ROUTES: [method: 'get' | 'post' | 'put' | 'patch' | 'delete', path: string, publicRoute: boolean][] = [
  ['get', '/healthz', true],
  ['get', '/readyz', true],
  ['get', '/fhir/metadata', true],
  ['get', '/.well-known/smart-configuration', true],
  ['get', '/.well-known/jwks.json', true],
  ['post', '/oauth2/token', true],
  ['get', '/fhir/_history', false],
  ['post', '/fhir', false],
  ['get', '/fhir/Patient', false],
  ['post', '/fhir/Patient', false],
  ['put', '/fhir/Patient', false],
  ['delete', '/fhir/Patient', false],
  ['get', '/fhir/Patient/_history', false],
  ['get', '/fhir/Patient/1', false],
  ['put', '/fhir/Patient/1', false],
  ['patch', '/fhir/Patient/1', false],
  ['delete', '/fhir/Patient/1', false],
  ['get', '/fhir/Patient/1/_history', false],
  ['get', '/fhir/Patient/1/_history/1', false],
  ['post', '/fhir/$reindex', false],
  ['post', '/fhir/Patient/$reindex', false],
  ['post', '/fhir/Patient/1/$reindex', false],
  ['get', '/fhir/Patient/$reindex', false],
  ['get', '/admin/clients', false],
  ['post', '/admin/clients', false],
  ['get', '/admin/clients/x', false],
  ['post', '/admin/clients/x/disable', false],
  ['post', '/admin/clients/x/enable', false],
  ['post', '/admin/clients/x/rotate-secret', false],
];

describe('route inventory', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t.close());

  it.each(ROUTES)('%s %s (public: %s)', async (method, path, publicRoute) => {
    const res = await request(t.http)[method](path);
    if (publicRoute) expect(res.status).not.toBe(401);
    else {
      expect(res.status).toBe(401);
      expect(res.body.issue[0].code).toBe('login');
    }
  });

  it('unknown paths outside the API are a plain 404 OperationOutcome', async () => {
    const res = await request(t.http).get('/nowhere');
    expect(res.status).toBe(404);
    expect(res.body.issue[0].code).toBe('not-found');
  });
});

describe('rate limiting per client', () => {
  let t: TestApp;
  const previous = process.env.RATE_LIMIT_PER_MINUTE;
  beforeAll(async () => {
    process.env.RATE_LIMIT_PER_MINUTE = '5';
    t = await createTestApp();
  });
  afterAll(async () => {
    process.env.RATE_LIMIT_PER_MINUTE = previous;
    if (previous === undefined) delete process.env.RATE_LIMIT_PER_MINUTE;
    await t.close();
  });

  it('answers 429 with Retry-After once a client exceeds its limit, without affecting other clients', async () => {
    const a = await registerTestClient(t, { role: 'hospital' });
    const b = await registerTestClient(t, { role: 'hospital' });
    const tokenA = await a.token();
    const tokenB = await b.token();
    const statuses: number[] = [];
    let last: request.Response | undefined;
    for (let n = 0; n < 6; n++) {
      last = await request(t.http).get('/fhir/Patient/rate-limit-x').set('Authorization', `Bearer ${tokenA}`);
      statuses.push(last.status);
    }
    expect(statuses).toEqual([404, 404, 404, 404, 404, 429]);
    expect(last!.headers['retry-after']).toMatch(/^\d+$/);
    expect(last!.body.issue[0].code).toBe('throttled');
    expect((await request(t.http).get('/fhir/Patient/rate-limit-x').set('Authorization', `Bearer ${tokenB}`)).status).toBe(404);
  });
});
