import { Client } from 'pg';
import request from 'supertest';
import { hospitalAgent } from '../support/auth';
import { createdId, FHIR_JSON, hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

const RUN = Date.now().toString(36);
const ORG = [`subj-a-${RUN}`, `subj-b-${RUN}`];
const CODE = `subj-${RUN}`;


/**
 * The consent predicate probes provisions only for consent subjects (docs/consent.md, "Patients
 * without provisions"): patients with a provision of their own or linked records. At 1M resources
 * the per-row probes of every other patient were most of its cost (issue 12's ratio). The set is
 * kept by triggers in the writing transaction and only grows.
 */
describe('consent subjects: probes only where a provision or link can decide', () => {
  let t: TestApp;
  const as: Awaited<ReturnType<typeof hospitalAgent>>[] = [];
  const patients: string[] = [];
  const observations = new Map<string, string[]>();

  const denyAll = (patient: string) => ({
    resourceType: 'Consent',
    status: 'active',
    scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
    category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
    patient: { reference: `Patient/${patient}` },
    policyRule: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'OPTOUT' }] },
    provision: { type: 'deny' },
  });
  const search = `/fhir/Observation?code=urn:example:subj|${CODE}&_count=100`;
  const ids = (res: request.Response): string[] => (res.body.entry ?? []).map((e: { resource: { id: string } }) => e.resource.id).sort();
  const subjects = async (): Promise<string[]> =>
    (await t.db.query(`SELECT patient_id FROM consent_subject WHERE patient_id = ANY($1) ORDER BY 1`, [patients])).map((r: { patient_id: string }) => r.patient_id);

  /** Loops of every plan node reading `relation` in the EXPLAIN ANALYZE of the search's SQL as organization B runs it. */
  async function probesOf(relation: string): Promise<number> {
    const captured: [string, unknown[]][] = [];
    // Record the statement with a pass-through spy.
    const record = jest.spyOn(Client.prototype, 'query');
    try {
      expect((await as[1].get(search)).status).toBe(200);
      for (const [sql, params] of record.mock.calls as unknown as [unknown, unknown[] | undefined][]) {
        if (typeof sql === 'string' && /^\s*SELECT/i.test(sql) && /\bresource r\b/.test(sql) && sql.includes('consent_provision')) captured.push([sql, params ?? []]);
      }
    } finally {
      record.mockRestore();
    }
    expect(captured).toHaveLength(1);
    const [[{ 'QUERY PLAN': plan }]] = [await t.db.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${captured[0][0]}`, captured[0][1])];
    let loops = 0;
    const walk = (node: Record<string, unknown>): void => {
      if (node['Relation Name'] === relation) loops += Number(node['Actual Loops'] ?? 0);
      for (const child of (node.Plans as Record<string, unknown>[] | undefined) ?? []) walk(child);
    };
    walk(plan[0].Plan);
    return loops;
  }

  beforeAll(async () => {
    t = await createTestApp();
    for (const org of ORG) as.push(await hospitalAgent(t, org));
    for (let p = 0; p < 3; p++) {
      const id = await as[0].post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(hiePatient({ name: [{ family: `Subj${p}${RUN}` }] })).then(createdId);
      patients.push(id);
      const obs: string[] = [];
      for (let n = 0; n < 5; n++) {
        obs.push(
          await as[0].post('/fhir/Observation')
            .set('Content-Type', FHIR_JSON)
            .send({ resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'urn:example:subj', code: CODE }] }, subject: { reference: `Patient/${id}` } })
            .then(createdId),
        );
      }
      observations.set(id, obs.sort());
    }
  }, 60_000);
  afterAll(() => t.close());

  it('patients without Consents or links are not subjects, and another organization sees their rows without a provision probe', async () => {
    expect(await subjects()).toEqual([]);
    expect(ids(await as[1].get(search))).toEqual(patients.flatMap((p) => observations.get(p)!).sort());
    // Before: one consent_provision probe per judged row (15).
    expect(await probesOf('consent_provision')).toBe(0);
    expect(await probesOf('patient_link')).toBe(0);
  });

  it('a Consent makes its patient a subject in the same transaction: its rows are probed and hidden, the others still are not', async () => {
    await as[0].post('/fhir/Consent').set('Content-Type', FHIR_JSON).send(denyAll(patients[0])).then(createdId);
    expect(await subjects()).toEqual([patients[0]]);
    expect(ids(await as[1].get(search))).toEqual([...observations.get(patients[1])!, ...observations.get(patients[2])!].sort());
    expect(await probesOf('consent_provision')).toBe(5);
    // The owner still sees everything (own data).
    expect(ids(await as[0].get(search))).toHaveLength(15);
  });

  it('a Patient.link makes both records subjects (a denial follows the person)', async () => {
    const current = await as[0].get(`/fhir/Patient/${patients[2]}`);
    const res = await as[0].put(`/fhir/Patient/${patients[2]}`)
      .set('Content-Type', FHIR_JSON)
      .send({ ...current.body, link: [{ other: { reference: `Patient/${patients[0]}` }, type: 'seealso' }] });
    expect(res.status).toBe(200);
    expect(await subjects()).toEqual([patients[0], patients[2]].sort());
    // Patient 0's denial now hides patient 2's rows too.
    expect(ids(await as[1].get(search))).toEqual(observations.get(patients[1]));
  });

  it('a withdrawn Consent leaves its patient a subject (the set only grows) and the base policy decides again', async () => {
    const [consent] = await t.db.query(`SELECT DISTINCT consent_id FROM consent_provision WHERE patient_id = $1`, [patients[0]]);
    expect((await as[0].delete(`/fhir/Consent/${consent.consent_id}`)).status).toBe(200);
    const current = await as[0].get(`/fhir/Patient/${patients[2]}`);
    expect((await as[0].put(`/fhir/Patient/${patients[2]}`).set('Content-Type', FHIR_JSON).send({ ...current.body, link: undefined })).status).toBe(200);
    expect(await subjects()).toEqual([patients[0], patients[2]].sort());
    expect(ids(await as[1].get(search))).toEqual(patients.flatMap((p) => observations.get(p)!).sort());
  });
});
