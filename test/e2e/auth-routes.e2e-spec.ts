import request from 'supertest';
import { PostgresThrottlerStorage } from '../../src/auth/rate-limit.storage';
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
  ['get', '/audit/export', false],
  ['get', '/fhir/$verify-chain', false],
  ['get', '/fhir/Patient/1/$access-report', false],
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
    // Rate-limit counters live in the database every node (and every test file) shares; requests
    // without a client (keyed by IP) from earlier files in this minute must not count against this
    // file's low limit. Files run one at a time (--runInBand), so clearing here is safe.
    await t.db.query('TRUNCATE rate_limit_window');
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

  it('counts one budget per client across routes (read, search, history)', async () => {
    const c = await registerTestClient(t, { role: 'hospital' });
    const token = await c.token();
    const paths = ['/fhir/Patient/rate-limit-y', '/fhir/Patient?_id=rate-limit-y', '/fhir/Patient/_history', '/fhir/Patient/rate-limit-y', '/fhir/Observation?_id=x', '/fhir/Patient/rate-limit-y'];
    const statuses: number[] = [];
    for (const path of paths) statuses.push((await request(t.http).get(path).set('Authorization', `Bearer ${token}`)).status);
    expect(statuses).toEqual([404, 200, 200, 404, 200, 429]);
  });

  it('shares the counters between app nodes through PostgreSQL', async () => {
    // Two storages on the same database stand for two app nodes behind a load balancer.
    const nodeA = new PostgresThrottlerStorage(t.db);
    const nodeB = new PostgresThrottlerStorage(t.db);
    const key = `two-nodes-${Date.now()}`;
    const hits = [];
    for (const node of [nodeA, nodeB, nodeA, nodeB]) hits.push(await node.increment(key, 60_000, 3, 60_000, 'default'));
    expect(hits.map((h) => [h.totalHits, h.isBlocked])).toEqual([[1, false], [2, false], [3, false], [4, true]]);
    expect(hits[3].timeToBlockExpire).toBeGreaterThanOrEqual(1);
    expect(hits[3].timeToBlockExpire).toBeLessThanOrEqual(60);
    // A new window starts from one again.
    await t.db.query(`UPDATE rate_limit_window SET window_start = window_start - interval '1 minute' WHERE key = $1`, [`default:${key}`]);
    expect(await t.db.query(`SELECT hits FROM rate_limit_window WHERE key = $1`, [`default:${key}`])).toEqual([{ hits: 4 }]);
    expect((await nodeB.increment(key, 60_000, 3, 60_000, 'default')).totalHits).toBe(1);
  });
});
