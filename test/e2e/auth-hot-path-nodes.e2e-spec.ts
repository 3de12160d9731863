import { ThrottlerStorage } from '@nestjs/throttler';
import request from 'supertest';
import { ClientRegistrationCache } from '../../src/auth/client-registration.cache';
import { ClientRegistrationRepository } from '../../src/auth/client-registration.repository';
import { PostgresThrottlerStorage, rateLimitLeaseSize } from '../../src/auth/rate-limit.storage';
import { registerTestClient } from '../support/auth';
import { createTestApp, TestApp } from '../support/test-app';

/**
 * The request hot path caches what it used to ask the database on every request — verified tokens,
 * the client's registration, the rate-limit budget — on each node. Two app nodes on one database
 * prove the caches never loosen the rules: a disabled client is refused on the next request
 * everywhere, and the shared rate limit holds across nodes within its documented tolerance.
 */
describe('hot-path caches across two app nodes on one database', () => {
  const LIMIT = 200;
  let a: TestApp;
  let b: TestApp;
  const previous = process.env.RATE_LIMIT_PER_MINUTE;

  beforeAll(async () => {
    process.env.RATE_LIMIT_PER_MINUTE = String(LIMIT);
    a = await createTestApp();
    b = await createTestApp();
  });
  afterAll(async () => {
    if (previous === undefined) delete process.env.RATE_LIMIT_PER_MINUTE;
    else process.env.RATE_LIMIT_PER_MINUTE = previous;
    await a?.close();
    await b?.close();
  });

  const read = (t: TestApp, token: string) => request(t.http).get('/fhir/Patient/none').set('Authorization', `Bearer ${token}`);

  it('each node authenticates its own requests (its own client-status cache is asked, not the other node\'s)', async () => {
    // Otherwise "refused on both nodes" below would be one node's cache answering for both.
    const client = await registerTestClient(a, { role: 'hospital' });
    const token = await client.token();
    const [onA, onB] = [a, b].map((t) => jest.spyOn(t.app.get(ClientRegistrationCache), 'status'));
    try {
      expect((await read(a, token)).status).toBe(404);
      expect([onA.mock.calls.length, onB.mock.calls.length]).toEqual([1, 0]);
      expect((await read(b, token)).status).toBe(404);
      expect([onA.mock.calls.length, onB.mock.calls.length]).toEqual([1, 1]);
    } finally {
      onA.mockRestore();
      onB.mockRestore();
    }
  });

  it('concurrent requests on one node each get their own answer (valid and invalid tokens at once)', async () => {
    // passport attaches each request's callbacks to the strategy object it is handed: one shared
    // object let a concurrent request's answer go to another and leave the first waiting forever.
    const client = await registerTestClient(a, { role: 'hospital' });
    const token = await client.token();
    const tokens = Array.from({ length: 16 }, (_, i) => (i % 4 === 3 ? `${token}x` : token));
    const statuses = await Promise.race([
      Promise.all(tokens.map((tk) => read(a, tk).then((r) => r.status))),
      new Promise<string>((resolve) => setTimeout(() => resolve('some requests got no answer within 15 s'), 15_000)),
    ]);
    expect(statuses).toEqual(tokens.map((tk) => (tk === token ? 404 : 401)));
  }, 30_000);

  it('a client disabled through one node is refused on the next request on both nodes', async () => {
    const client = await registerTestClient(a, { role: 'hospital' });
    const token = await client.token();
    // Both nodes have verified the token and cached the client as enabled.
    for (let n = 0; n < 2; n++) {
      expect((await read(a, token)).status).toBe(404);
      expect((await read(b, token)).status).toBe(404);
    }
    expect(await a.app.get(ClientRegistrationRepository).setDisabled(client.clientId, true)).toBe(true);
    const onB = await read(b, token);
    expect(onB.status).toBe(401);
    expect(onB.body.issue[0].code).toBe('login');
    expect((await read(a, token)).status).toBe(401);
    // Enabled again (through the other node): the same token works again on both.
    await b.app.get(ClientRegistrationRepository).setDisabled(client.clientId, false);
    expect((await read(a, token)).status).toBe(404);
    expect((await read(b, token)).status).toBe(404);
  });

  it('a client disabled by SQL (as by the CLI, from another process) is refused on both nodes once the change is announced', async () => {
    const client = await registerTestClient(a, { role: 'hospital' });
    const token = await client.token();
    expect((await read(a, token)).status).toBe(404);
    expect((await read(b, token)).status).toBe(404);
    // A third connection, as the CLI's: neither node makes the change itself.
    const heard = Promise.all([a, b].map((t) => (t.app.get(ClientRegistrationRepository) as unknown as { cache: { heard(id: string): Promise<void> } }).cache.heard(client.clientId)));
    await a.db.query(`UPDATE oauth_client SET disabled = true WHERE client_id = $1`, [client.clientId]);
    await heard;
    expect((await read(a, token)).status).toBe(401);
    expect((await read(b, token)).status).toBe(401);
  });

  it('while a node cannot hear changes it caches nothing: a client disabled meanwhile is refused at once', async () => {
    const client = await registerTestClient(a, { role: 'hospital' });
    const token = await client.token();
    expect((await read(a, token)).status).toBe(404);
    expect((await read(b, token)).status).toBe(404);
    const caches = [a, b].map((t) => t.app.get(ClientRegistrationCache));
    expect(caches.every((c) => c.listening)).toBe(true);
    // Both nodes lose their listen connections; the change below is announced to nobody.
    await a.db.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'fhir-hie-listen-clients' AND datname = current_database()`);
    for (let i = 0; i < 100 && caches.some((c) => c.listening); i++) await new Promise((r) => setTimeout(r, 20));
    expect(caches.some((c) => c.listening)).toBe(false);
    await a.db.query(`UPDATE oauth_client SET disabled = true WHERE client_id = $1`, [client.clientId]);
    expect((await read(a, token)).status).toBe(401);
    expect((await read(b, token)).status).toBe(401);
  });

  it('a remembered token is refused once it expires', async () => {
    const client = await registerTestClient(a, { role: 'hospital' });
    const token = await client.token();
    expect((await read(a, token)).status).toBe(404);
    const exp = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8')).exp as number;
    // Only the clock moves past exp (timers and I/O stay real).
    jest.useFakeTimers({
      now: exp * 1000 + 1000,
      doNotFake: ['hrtime', 'nextTick', 'performance', 'queueMicrotask', 'setImmediate', 'clearImmediate', 'setInterval', 'clearInterval', 'setTimeout', 'clearTimeout'],
    });
    let res: request.Response;
    try {
      res = await read(a, token);
    } finally {
      jest.useRealTimers();
    }
    expect(res.status).toBe(401);
    expect(res.body.issue[0].code).toBe('login');
  });

  it('the shared rate limit holds across both nodes: never more than the limit, at most one lease short per other node', async () => {
    const lease = rateLimitLeaseSize(LIMIT);
    expect(lease).toBe(4);
    // One window for both nodes, half a minute in: no boundary inside the burst.
    const at = new Date(Date.UTC(2026, 0, 7, 10, 0, 30));
    for (const t of [a, b]) (t.app.get(ThrottlerStorage) as PostgresThrottlerStorage).clock = () => at;
    const client = await registerTestClient(a, { role: 'hospital' });
    const token = await client.token();
    const statuses: number[] = [];
    // Alternating nodes, in pairs of concurrent requests: both nodes hold leases at once.
    for (let n = 0; n < (LIMIT + 20) / 2; n++) {
      const [ra, rb] = await Promise.all([read(a, token), read(b, token)]);
      statuses.push(ra.status, rb.status);
    }
    const admitted = statuses.filter((s) => s === 404).length;
    const refused = statuses.filter((s) => s === 429).length;
    expect(admitted + refused).toBe(statuses.length);
    expect(admitted).toBeLessThanOrEqual(LIMIT);
    expect(admitted).toBeGreaterThanOrEqual(LIMIT - (lease - 1));
    // Once refused, refused to the end of the window on both nodes.
    const firstRefusal = statuses.indexOf(429);
    expect(statuses.slice(firstRefusal + 2).every((s) => s === 429)).toBe(true);
    const last = await read(b, token);
    expect(last.status).toBe(429);
    // The burst's bucket leaves the sliding window 60 s after it (issue 22, item 15).
    expect(last.headers['retry-after']).toBe('60');
  });
});
