import request from 'supertest';
import { createTestApp, TestApp } from '../support/test-app';
import { ScratchPostgres, startScratchPostgres } from '../support/scratch-postgres';

/**
 * Issue 9 item 5: with PostgreSQL gone, requests answered 401 ("A valid bearer token is required")
 * and /readyz 500. Now: 503 `transient` with Retry-After, and the app recovers when the database
 * is back, without a restart. The app runs on a scratch cluster of its own that the test stops.
 */
describe('database outage', () => {
  let pg: ScratchPostgres;
  let t: TestApp;
  const savedUrl = process.env.DATABASE_URL;
  const identifier = `outage-${Date.now().toString(36)}`;
  const patient = {
    resourceType: 'Patient',
    identifier: [{ system: 'http://hospital-a.example.org/mrn', value: identifier }],
    name: [{ family: 'Outage', given: ['Olga'] }],
    gender: 'female',
  };

  beforeAll(async () => {
    pg = await startScratchPostgres({ databases: ['hie_outage'] });
    process.env.DATABASE_URL = pg.url('hie_outage');
    t = await createTestApp();
  }, 120_000);

  afterAll(async () => {
    await t?.close();
    await pg?.destroy();
    process.env.DATABASE_URL = savedUrl;
  });

  const expectUnavailable = (res: request.Response, diagnostics: string) => {
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBe('5');
    expect(res.headers['content-type']).toMatch(/^application\/fhir\+json/);
    expect(res.body.resourceType).toBe('OperationOutcome');
    expect(res.body.issue).toEqual([{ severity: 'error', code: 'transient', diagnostics }]);
  };

  it('answers 503 transient with Retry-After while the database is away, and recovers when it is back', async () => {
    expect((await t.api.get('/fhir/Patient?_count=1')).status).toBe(200);
    expect((await request(t.http).get('/readyz')).status).toBe(200);

    await pg.stop();

    // A valid token: the client lookup fails on the database, which is not the token's fault.
    expectUnavailable(await t.api.get('/fhir/Patient?_count=1'), 'The database is unreachable; retry later');
    expectUnavailable(
      await t.api.post('/fhir/Patient').set('Content-Type', 'application/fhir+json').send(patient),
      'The database is unreachable; retry later',
    );
    // The token endpoint (public, rate-limited in the database) as well.
    expectUnavailable(
      await request(t.http).post('/oauth2/token').type('form').send({ grant_type: 'client_credentials', client_id: 'x', client_secret: 'y', scope: 'system/*.rs' }),
      'The database is unreachable; retry later',
    );
    expectUnavailable(await request(t.http).get('/readyz'), 'Not ready: the database is unreachable');
    // Liveness does not depend on the database. A request without a token is refused, but its
    // refusal cannot be audited while the database is away: fail closed, 503 like the rest.
    expect((await request(t.http).get('/healthz')).status).toBe(200);
    expectUnavailable(await request(t.http).get('/fhir/Patient'), 'The database is unreachable; retry later');

    await pg.start();

    // The pool drops its dead connections and opens new ones: no restart of the app.
    const read = await t.api.get(`/fhir/Patient?identifier=${identifier}`);
    expect(read.status).toBe(200);
    // The write refused during the outage was not stored.
    expect(read.body.total ?? read.body.entry?.length ?? 0).toBe(0);
    expect((await request(t.http).get('/readyz')).status).toBe(200);
    const created = await t.api.post('/fhir/Patient').set('Content-Type', 'application/fhir+json').send(patient);
    expect(created.status).toBe(201);
  }, 120_000);
});
