import { FHIR_JSON, hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

/**
 * Issue 11/13: a read holds one pooled connection for its storage session; anything else it needs
 * (the consent explanation of its audit record) must run on that connection. With a second
 * connection per read, as many concurrent reads as the pool has connections waited for each other
 * until the pool's 30 s acquire timeout and answered 503.
 */
describe('reads under a pool smaller than the concurrency', () => {
  let t: TestApp;
  const saved = process.env.DB_POOL_SIZE;
  beforeAll(async () => {
    // One connection is the audit writer's own; two are left for the requests' sessions.
    process.env.DB_POOL_SIZE = '3';
    t = await createTestApp();
  });
  afterAll(async () => {
    if (saved === undefined) delete process.env.DB_POOL_SIZE;
    else process.env.DB_POOL_SIZE = saved;
    await t.close();
  });

  it('answers 40 concurrent reads by id with 200, none waiting for a second connection', async () => {
    const patient = await t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(hiePatient());
    expect(patient.status).toBe(201);
    const started = Date.now();
    const reads = await Promise.all(Array.from({ length: 40 }, () => t.api.get(`/fhir/Patient/${patient.body.id}`)));
    expect(reads.map((r) => r.status)).toEqual(Array(40).fill(200));
    expect(new Set(reads.map((r) => r.body.id))).toEqual(new Set([patient.body.id]));
    // Far below the pool's 30 s acquire timeout that the deadlock ran into.
    expect(Date.now() - started).toBeLessThan(20_000);
    const [{ n }] = await t.db.query(`SELECT count(*)::int AS n FROM audit_event WHERE type = 'rest' AND $1 = ANY(entities)`, [`Patient/${patient.body.id}`]);
    expect(n).toBe(41);
  }, 60_000);
});
