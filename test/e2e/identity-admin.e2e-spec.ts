import request from 'supertest';
import { IDENTITY_MATCH_QUEUE } from '../../src/identity/identity-matching.job';
import { hospitalAgent } from '../support/auth';
import { FHIR_JSON } from '../support/fixtures';
import { jobsSettled } from '../support/jobs';
import { createTestApp, TestApp } from '../support/test-app';

// Person links made by matching after write are the subject here (test/support turns it off elsewhere).
process.env.IDENTITY_MATCH_ON_WRITE = 'on';

const RUN = Date.now().toString(36);
const LETTERS = RUN.replace(/[0-9]/g, '');
const ORG = ['a', 'b', 'c', 'd'].map((n) => `idadm-${n}-${RUN}`);
const ACT = 'http://terminology.hl7.org/CodeSystem/v3-ActCode';
const HIV = { system: ACT, code: 'HIV' };
const SSN = 'http://hl7.org/fhir/sid/us-ssn';

type Agent = ReturnType<typeof request.agent>;

function patient(org: number, family: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    resourceType: 'Patient',
    identifier: [{ system: `http://${ORG[org]}.example.org/mrn`, value: `${family}-${org}` }],
    name: [{ family, given: ['Dagny'] }],
    gender: 'female',
    birthDate: '1971-05-23',
    ...extra,
  };
}

function consent(patientId: string, provision: Record<string, unknown>): Record<string, unknown> {
  return {
    resourceType: 'Consent',
    status: 'active',
    scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
    category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
    patient: { reference: `Patient/${patientId}` },
    dateTime: '2026-01-01T00:00:00Z',
    policyRule: { coding: [{ system: ACT, code: 'OPTOUT' }] },
    provision,
  };
}

const recipient = (org: number) => [{ role: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'IRCP' }] }, reference: { reference: `Organization/${ORG[org]}` } }];
const ids = (bundle: { entry?: { resource: { resourceType: string; id: string } }[] }) => (bundle.entry ?? []).map((e) => `${e.resource.resourceType}/${e.resource.id}`).sort();

/**
 * The master patient index's Person links as linked records (docs/identity.md, docs/consent.md):
 * permits follow Person links only, `$everything` and compartment searches include the person's
 * other records subject to consent, and HIE admins link, unlink, merge and split Persons.
 */
describe('identity: Person links as linked records, and their administration', () => {
  let t: TestApp;
  const as: Agent[] = [];

  const created = (res: request.Response): string => {
    if (res.status !== 201) throw new Error(`create: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body.id as string;
  };
  const create = async (org: number, body: Record<string, unknown>): Promise<string> =>
    created(await as[org].post(`/fhir/${body.resourceType as string}`).set('Content-Type', FHIR_JSON).send(body));
  const observation = (org: number, p: string, security: unknown[] = []) =>
    create(org, { resourceType: 'Observation', status: 'final', meta: { security }, code: { text: 'identity admin test' }, subject: { reference: `Patient/${p}` } });
  const condition = (org: number, p: string) =>
    create(org, { resourceType: 'Condition', code: { text: 'identity admin test' }, subject: { reference: `Patient/${p}` }, clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-clinical', code: 'active' }] } });
  const settled = (): Promise<void> => jobsSettled(t.db, IDENTITY_MATCH_QUEUE);
  const personOf = async (patientId: string): Promise<string | undefined> =>
    ((await t.db.query(`SELECT person_id FROM identity_person_link WHERE patient_id = $1`, [patientId])) as { person_id: string }[])[0]?.person_id;
  /** One person registered at each of these organizations with a shared national id: linked by matching (level3). */
  async function person(orgs: number[], family: string): Promise<string[]> {
    const records: string[] = [];
    for (const org of orgs) records.push(await create(org, patient(org, family, { identifier: [{ system: SSN, value: `${family}-ssn` }] })));
    await settled();
    const p = await personOf(records[0]);
    for (const r of records) expect(await personOf(r)).toBe(p);
    return records;
  }

  beforeAll(async () => {
    t = await createTestApp();
    for (const org of ORG) as.push(await hospitalAgent(t, org));
  });
  afterAll(async () => t?.close());

  it("a permit recorded at a Person-linked record opens the person's other records; a Patient.link permit still does not", async () => {
    const [p1, p2] = await person([0, 1], `Permit${LETTERS}`);
    const hiv1 = await observation(0, p1, [HIV]);
    const hiv2 = await observation(1, p2, [HIV]);
    // A hospital's own Patient.link to the same pair of organizations: deny-only, as before.
    const q1 = await create(0, patient(0, `Asserted${LETTERS}`, { birthDate: '1940-01-01' }));
    const q2 = await create(1, patient(1, `Unrelated${LETTERS}`, { name: [{ family: `Unrelated${LETTERS}`, given: ['Ola'] }], gender: 'male', birthDate: '1950-03-04', link: [{ other: { reference: `Patient/${q1}` }, type: 'seealso' }] }));
    await settled();
    expect(await personOf(q1)).toBeUndefined();
    const hivQ1 = await observation(0, q1, [HIV]);
    const hivQ2 = await observation(1, q2, [HIV]);
    // Organization 2 permits organization 3 HIV data at its records only.
    created(await as[1].post('/fhir/Consent').set('Content-Type', FHIR_JSON).send(consent(p2, { type: 'permit', actor: recipient(2), securityLabel: [HIV] })));
    created(await as[1].post('/fhir/Consent').set('Content-Type', FHIR_JSON).send(consent(q2, { type: 'permit', actor: recipient(2), securityLabel: [HIV] })));

    const seen = await as[2].get(`/fhir/Observation?subject=Patient/${p1},Patient/${p2},Patient/${q1},Patient/${q2}&_total=accurate`);
    expect(seen.status).toBe(200);
    expect([seen.body.total, ids(seen.body)]).toEqual([3, [`Observation/${hiv1}`, `Observation/${hiv2}`, `Observation/${hivQ2}`].sort()]);
    expect((await as[2].get(`/fhir/Observation/${hiv1}`)).status).toBe(200);
    expect((await as[2].get(`/fhir/Observation/${hivQ1}`)).status).toBe(404);
    const closure = await t.db.query(`SELECT patient_id, linked_id, via_person FROM patient_link WHERE patient_id = ANY($1) ORDER BY patient_id`, [[p1, q1]]);
    expect(closure).toEqual([
      { patient_id: p1, linked_id: p2, via_person: true },
      { patient_id: q1, linked_id: q2, via_person: false },
    ].sort((x, y) => x.patient_id.localeCompare(y.patient_id)));
  });

  it("$everything and compartment searches on one organization's record include the person's records at the other two, minus what consent denies", async () => {
    const [a, b, c] = await person([0, 1, 2], `Everything${LETTERS}`);
    const a1 = await observation(0, a);
    const b1 = await observation(1, b);
    const b2 = await condition(1, b);
    const c1 = await observation(2, c);
    // A record at a fourth organization linked only by its own Patient.link: never pulled in.
    const d = await create(3, patient(3, `Other${LETTERS}`, { birthDate: '1990-02-02', link: [{ other: { reference: `Patient/${a}` }, type: 'seealso' }] }));
    await observation(3, d);
    // At C the person denies organization A their Observations: it follows the person to B's too.
    created(await as[2].post('/fhir/Consent').set('Content-Type', FHIR_JSON).send(
      consent(c, { type: 'permit', provision: [{ type: 'deny', actor: recipient(0), class: [{ system: 'http://hl7.org/fhir/resource-types', code: 'Observation' }] }] }),
    ));

    const everything = await as[0].get(`/fhir/Patient/${a}/$everything?_total=accurate`);
    expect(everything.status).toBe(200);
    // The Person (R4: in the Patient compartment by its link) and D's Patient (its link names A) too,
    // but none of D's data.
    expect(ids(everything.body).filter((r) => !r.startsWith('Consent/'))).toEqual(
      [`Patient/${a}`, `Patient/${b}`, `Patient/${c}`, `Patient/${d}`, `Person/${await personOf(a)}`, `Observation/${a1}`, `Condition/${b2}`].sort(),
    );
    const conditions = await as[0].get(`/fhir/Patient/${a}/Condition`);
    expect(ids(conditions.body)).toEqual([`Condition/${b2}`]);
    // B's organization is not denied: it sees the whole person from its own record.
    const fromB = await as[1].get(`/fhir/Patient/${b}/Observation`);
    expect(ids(fromB.body)).toEqual([`Observation/${a1}`, `Observation/${b1}`, `Observation/${c1}`].sort());
  });
});
