import { ThrottlerStorage } from '@nestjs/throttler';
import request from 'supertest';
import { PostgresThrottlerStorage } from '../../src/auth/rate-limit.storage';
import { registerTestClient } from '../support/auth';
import { createTestApp, TestApp } from '../support/test-app';

/**
 * The budgets of RATE_LIMIT_PER_MINUTE: the token endpoint counts per client asking, the API per
 * authenticated client, and requests without a client per IP; exhausting one leaves the others.
 * The window clock is pinned, so no minute boundary can fall inside a burst.
 */
describe('rate-limit budgets: token endpoint, API, per IP', () => {
  let t: TestApp;
  const previous = process.env.RATE_LIMIT_PER_MINUTE;
  const previousFailures = process.env.RATE_LIMIT_TOKEN_FAILURES_PER_ADDRESS;
  let storage: PostgresThrottlerStorage;
  let minute = 0;

  beforeAll(async () => {
    process.env.RATE_LIMIT_PER_MINUTE = '3';
    process.env.RATE_LIMIT_TOKEN_FAILURES_PER_ADDRESS = '3';
    t = await createTestApp();
    storage = t.app.get(ThrottlerStorage) as PostgresThrottlerStorage;
  });
  beforeEach(() => {
    // Each test three minutes after the last, beyond its sliding window: every budget starts from zero;
    // a burst counts in one bucket, which leaves the window 66 s later at a limit of 3 (Retry-After).
    const at = new Date(Date.UTC(2026, 0, 5, 10, (minute += 3), 30));
    storage.clock = () => at;
  });
  afterAll(async () => {
    if (previous === undefined) delete process.env.RATE_LIMIT_PER_MINUTE;
    else process.env.RATE_LIMIT_PER_MINUTE = previous;
    if (previousFailures === undefined) delete process.env.RATE_LIMIT_TOKEN_FAILURES_PER_ADDRESS;
    else process.env.RATE_LIMIT_TOKEN_FAILURES_PER_ADDRESS = previousFailures;
    await t.close();
  });

  const tokenRequest = (clientId: string, secret: string) =>
    request(t.http).post('/oauth2/token').type('form').send({ grant_type: 'client_credentials', client_id: clientId, client_secret: secret, scope: 'system/*.*' });

  it('the token endpoint allows each client its own budget, apart from its API budget', async () => {
    const a = await registerTestClient(t, { role: 'hospital' });
    const b = await registerTestClient(t, { role: 'hospital' });
    const statuses: number[] = [];
    let last: request.Response | undefined;
    let held: string | undefined;
    for (let n = 0; n < 4; n++) {
      last = await tokenRequest(a.clientId, a.secret);
      statuses.push(last.status);
      held ??= last.body.access_token;
    }
    expect(statuses).toEqual([200, 200, 200, 429]);
    expect(last!.headers['retry-after']).toBe('66');
    expect(last!.body.issue[0].code).toBe('throttled');
    // Another client's token budget is untouched …
    expect((await tokenRequest(b.clientId, b.secret)).status).toBe(200);
    // … and so is a's API budget: the token it got works three times.
    const api: number[] = [];
    for (let n = 0; n < 4; n++) api.push((await request(t.http).get('/fhir/Patient/none').set('Authorization', `Bearer ${held}`)).status);
    expect(api).toEqual([404, 404, 404, 429]);
  });

  it('requests without a client count per IP; an authenticated client from the same IP keeps its own budget', async () => {
    const c = await registerTestClient(t, { role: 'hospital' });
    const token = await c.token();
    const anonymous: number[] = [];
    for (let n = 0; n < 4; n++) anonymous.push((await request(t.http).get('/fhir/metadata')).status);
    expect(anonymous).toEqual([200, 200, 200, 429]);
    // Token requests that name no client fail, and failures count per address (TokenEndpointThrottle,
    // RATE_LIMIT_TOKEN_FAILURES_PER_ADDRESS), apart from the API's budgets.
    const nameless: number[] = [];
    for (let n = 0; n < 4; n++) nameless.push((await request(t.http).post('/oauth2/token').type('form').send({ grant_type: 'client_credentials' })).status);
    expect(nameless).toEqual([401, 401, 401, 429]);
    expect((await request(t.http).get('/fhir/Patient/none').set('Authorization', `Bearer ${token}`)).status).toBe(404);
  });
});
