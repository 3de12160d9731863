import { Client } from 'pg';
import request from 'supertest';
import { hospitalAgent } from '../support/auth';
import { consentResource } from '../support/consent';
import { createdId, FHIR_JSON, hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

const RUN = Date.now().toString(36);
const ORG = [`total-a-${RUN}`, `total-b-${RUN}`];
const SYSTEM = 'urn:example:total';
const CODE = `total-${RUN}`;

/**
 * `_total=accurate` (docs/search.md): the count judges each match's access after the join
 * (`count(*) FILTER (WHERE access)`), and the live-resource index carries every column the access
 * predicate reads, so the count can be answered from indexes alone (at 1M resources, one table probe
 * per match was most of a 141k-match count's second: docs/performance.md).
 */
describe('_total=accurate: exact under consent, and answerable from indexes alone', () => {
  let t: TestApp;
  const as: Awaited<ReturnType<typeof hospitalAgent>>[] = [];
  const patients: string[] = [];
  const search = (count: number) => `/fhir/Observation?code=${encodeURIComponent(`${SYSTEM}|${CODE}`)}&_total=accurate&_count=${count}`;

  const observation = (patient: string) => ({
    resourceType: 'Observation',
    status: 'final',
    code: { coding: [{ system: SYSTEM, code: CODE }] },
    subject: { reference: `Patient/${patient}` },
  });

  /** The count statements the search sent (a pass-through spy on the driver). */
  async function countStatements(agent: (typeof as)[number], path: string): Promise<{ res: request.Response; counts: [string, unknown[]][] }> {
    const record = jest.spyOn(Client.prototype, 'query');
    try {
      const res = await agent.get(path);
      const counts: [string, unknown[]][] = [];
      for (const [sql, params] of record.mock.calls as unknown as [unknown, unknown[] | undefined][]) {
        if (typeof sql === 'string' && /^SELECT \(count\(\*\) FILTER/.test(sql)) counts.push([sql, params ?? []]);
      }
      return { res, counts };
    } finally {
      record.mockRestore();
    }
  }

  beforeAll(async () => {
    t = await createTestApp();
    for (const org of ORG) as.push(await hospitalAgent(t, org));
    for (let p = 0; p < 3; p++) {
      const id = await as[0].post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(hiePatient({ name: [{ family: `Total${p}${RUN}` }] })).then(createdId);
      patients.push(id);
      for (let n = 0; n < 4; n++) await as[0].post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(observation(id)).then(createdId);
    }
    // A deleted match is not counted.
    const gone = await as[0].post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(observation(patients[1])).then(createdId);
    expect((await as[0].delete(`/fhir/Observation/${gone}`)).status).toBe(200);
    // Patient 0 denies all sharing: organization B sees 8 of the 12.
    await as[0].post('/fhir/Consent').set('Content-Type', FHIR_JSON).send(consentResource(patients[0])).then(createdId);
  }, 60_000);
  afterAll(() => t.close());

  it('counts every live match for the custodian, and only the permitted ones for another organization, in one count statement each', async () => {
    const own = await countStatements(as[0], search(2));
    expect(own.res.status).toBe(200);
    expect(own.res.body.total).toBe(12);
    expect(own.res.body.entry).toHaveLength(2);
    expect(own.counts).toHaveLength(1);

    const other = await countStatements(as[1], search(2));
    expect(other.res.status).toBe(200);
    expect(other.res.body.total).toBe(8);
    expect(other.counts).toHaveLength(1);
    // The total is the number of entries a full page returns (the same predicate, the same rows).
    const all = await as[1].get(search(50));
    expect(all.body.total).toBe(8);
    expect(all.body.entry).toHaveLength(8);
    expect(all.body.entry.map((e: { resource: { subject: { reference: string } } }) => e.resource.subject.reference).sort()).toEqual(
      [...Array(4).fill(`Patient/${patients[1]}`), ...Array(4).fill(`Patient/${patients[2]}`)].sort(),
    );
  });

  it('the count reads resource only through an index-only scan of resource_live_access_idx (every column the predicate reads is in it)', async () => {
    const { counts } = await countStatements(as[1], search(2));
    expect(counts).toHaveLength(1);
    const [sql, params] = counts[0];
    // The visibility map set and the table's sequential and bitmap scans ruled out (a few rows would
    // otherwise be read whole): an index-only scan needs an index that covers every column of `r`
    // the statement reads (enable_indexscan stays on: it governs index-only scans too).
    await t.db.query('VACUUM resource');
    const plan = await t.db.transaction(async (m) => {
      await m.query('SET LOCAL enable_seqscan = off');
      await m.query('SET LOCAL enable_bitmapscan = off');
      const [{ 'QUERY PLAN': json }] = await m.query(`EXPLAIN (FORMAT JSON) ${sql}`, params);
      return json[0].Plan as Record<string, unknown>;
    });
    const scans: Record<string, unknown>[] = [];
    const walk = (node: Record<string, unknown>): void => {
      if (node['Relation Name'] === 'resource') scans.push(node);
      for (const child of (node.Plans as Record<string, unknown>[] | undefined) ?? []) walk(child);
    };
    walk(plan);
    expect(scans.map((s) => [s['Node Type'], s['Index Name'], s['Disabled'] ?? false])).toEqual([['Index Only Scan', 'resource_live_access_idx', false]]);
  });
});
