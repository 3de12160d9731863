import request from 'supertest';
import { IDENTITY_BATCH_MATCH_QUEUE, IdentityBatchMatchJob } from '../../src/identity/identity-batch-match.job';
import { IDENTITY_MATCH_QUEUE } from '../../src/identity/identity-matching.job';
import { identityPopulation } from '../../src/identity/identity-population';
import type { AuditRecord } from '../../src/fhir/pipeline/audit-record';
import { captureAuditRecords } from '../support/audit';
import { hospitalAgent } from '../support/auth';
import { postTransaction } from '../support/bundles';
import { createTestApp, TestApp } from '../support/test-app';
import { jobsSettled } from '../support/jobs';

// A bulk load: matching after write stays off (as test/support sets it); the batch match links.
process.env.IDENTITY_MATCH_ON_WRITE = 'off';

const RUN = Date.now().toString(36);
const ORG = [0, 1, 2].map((n) => `batch-${n}-${RUN}`);

/**
 * The batch match (docs/identity.md): Patients loaded with IDENTITY_MATCH_ON_WRITE=off are linked
 * afterwards by one admin job on the outbox that walks every indexed Patient in pages.
 */
describe('identity: batch match after a bulk load', () => {
  let t: TestApp;
  const as: ReturnType<typeof request.agent>[] = [];
  // 10 persons at three organizations and two twin pairs: 38 records, pages of 7 (the last one short).
  const population = identityPopulation({ seed: 4242, persons: 10, twinPairs: 2, parentChildPairs: 0, orgs: 3, typoRate: 0, transposeRate: 0 });
  const idOf = new Map<number, string>();
  let records: AuditRecord[];

  beforeAll(async () => {
    t = await createTestApp();
    for (const org of ORG) as.push(await hospitalAgent(t, org));
    records = captureAuditRecords(t.app);
    for (let org = 0; org < ORG.length; org++) {
      const mine = population.map((r, i) => ({ r, i })).filter(({ r }) => r.org === org);
      const res = await postTransaction(as[org], mine.map(({ r }) => ({ resource: r.patient, request: { method: 'POST', url: 'Patient' } })));
      if (res.status !== 200) throw new Error(`bundle: ${res.status}`);
      (res.body.entry as { response: { location: string } }[]).forEach((e, k) => idOf.set(mine[k].i, /Patient\/([^/]+)/.exec(e.response.location)![1]));
    }
  });
  afterAll(async () => t?.close());

  it('links nothing on write; one batch run makes one Person per person, in pages, with one system-access record per page', async () => {
    expect(population).toHaveLength(38);
    expect(await t.db.query(`SELECT 1 FROM identity_person_link`)).toHaveLength(0);
    records.length = 0;
    await t.db.transaction((tx) => t.app.get(IdentityBatchMatchJob).start(tx, 7));
    await jobsSettled(t.db, IDENTITY_BATCH_MATCH_QUEUE);
    const pages: { n: number }[] = await t.db.query(`SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1 AND state = 'completed'`, [IDENTITY_BATCH_MATCH_QUEUE]);
    // 38 records in pages of 7: six pages (the sixth holds 3 and enqueues none).
    expect(pages[0].n).toBe(6);
    expect(await t.db.query(`SELECT 1 FROM pgboss.job WHERE name = $1`, [IDENTITY_MATCH_QUEUE])).toHaveLength(0);
    expect(records.filter((r) => r.kind === 'system-access').map((r) => r.subtype)).toEqual(Array.from({ length: 6 }, () => 'identity-matching'));

    const rows: { patient_id: string; person_id: string }[] = await t.db.query(`SELECT patient_id, person_id FROM identity_person_link`);
    const personOf = new Map(rows.map((r) => [r.patient_id, r.person_id]));
    const groups = new Map<string, Set<string | undefined>>();
    population.forEach((r, i) => groups.set(r.person, (groups.get(r.person) ?? new Set()).add(personOf.get(idOf.get(i)!))));
    // Every labelled person is exactly one Person (no record left out), and no two share one.
    expect([...groups.values()].map((s) => [...s].every((p) => p !== undefined) && s.size)).toEqual(Array.from({ length: 14 }, () => 1));
    expect(new Set([...groups.values()].map((s) => [...s][0])).size).toBe(14);
    // Set-based: each page writes its new Persons in one transaction (not one per Person) and
    // feeds consent's linked records once: every record reaches the others of its person.
    const [{ persons, transactions }] = await t.db.query(
      `SELECT count(*)::int AS persons, count(DISTINCT xmin::text)::int AS transactions FROM resource_history WHERE resource_type = 'Person'`,
    );
    expect(persons).toBe(14);
    expect(transactions).toBeLessThanOrEqual(6);
    // The twins' review Tasks too: asked once per pair, written with their page's Persons.
    const [{ tasks, taskTransactions }] = await t.db.query(
      `SELECT count(*)::int AS tasks, count(DISTINCT xmin::text)::int AS "taskTransactions" FROM resource_history WHERE resource_type = 'Task'`,
    );
    const [{ reviews }] = await t.db.query(`SELECT count(*)::int AS reviews FROM identity_review`);
    expect(tasks).toBe(reviews);
    expect(reviews).toBeGreaterThan(0);
    expect(taskTransactions).toBeLessThanOrEqual(Math.min(6, reviews));
    const sizes = [...population.reduce((m, r) => m.set(r.person, (m.get(r.person) ?? 0) + 1), new Map<string, number>()).values()];
    const [{ pairs }] = await t.db.query(`SELECT count(*)::int AS pairs FROM patient_link WHERE via_person AND patient_id = ANY($1::text[])`, [[...idOf.values()]]);
    expect(pairs).toBe(sizes.reduce((n, k) => n + k * (k - 1), 0));
  });

  it('a second run finds the links it made and changes nothing', async () => {
    const versions = async (): Promise<number> => (await t.db.query(`SELECT count(*)::int AS n FROM resource_history WHERE resource_type = 'Person'`))[0].n;
    const [links, v] = [await t.db.query(`SELECT patient_id, person_id FROM identity_person_link ORDER BY patient_id`), await versions()];
    await t.db.transaction((tx) => t.app.get(IdentityBatchMatchJob).start(tx));
    await jobsSettled(t.db, IDENTITY_BATCH_MATCH_QUEUE);
    expect(await t.db.query(`SELECT patient_id, person_id FROM identity_person_link ORDER BY patient_id`)).toEqual(links);
    expect(await versions()).toBe(v);
  });
});
