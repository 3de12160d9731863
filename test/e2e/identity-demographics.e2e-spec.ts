import request from 'supertest';
import { postTransaction } from '../support/bundles';
import { FHIR_JSON } from '../support/fixtures';
import { hospitalAgent } from '../support/auth';
import { createTestApp, TestApp } from '../support/test-app';

const RUN = Date.now().toString(36);
const ORG = `ident-demo-${RUN}`;

interface Row {
  custodian_org: string;
  family: string[];
  given: string[];
  birth_date: string | null;
  sex: string | null;
  postal_codes: string[];
  phones: string[];
  emails: string[];
  identifiers: string[];
  family_codes: string[];
  given_codes: string[];
}

/**
 * The identity module's demographics index (docs/identity.md): each Patient write keeps its row
 * in the write's transaction (normalized names, phonetic codes from fuzzystrmatch, blocking keys);
 * a rolled-back write leaves none, a delete removes it.
 */
describe('identity: patient demographics index', () => {
  let t: TestApp;
  let api: ReturnType<typeof request.agent>;

  const row = async (id: string): Promise<Row | undefined> => ((await t.db.query(`SELECT * FROM patient_demographics WHERE patient_id = $1`, [id])) as Row[])[0];
  const patient = (extra: Record<string, unknown> = {}) => ({
    resourceType: 'Patient',
    identifier: [{ system: 'http://hospital-a.example.org/mrn', value: `MRN-${RUN}` }],
    name: [{ family: 'Müller-Schmidt', given: ['Bill'] }],
    gender: 'male',
    birthDate: '1970-03-04',
    address: [{ line: ['1 Main Street'], postalCode: '12 345' }],
    telecom: [
      { system: 'phone', value: '+1 (555) 010-2000' },
      { system: 'email', value: 'Bill@Example.org' },
    ],
    ...extra,
  });

  beforeAll(async () => {
    t = await createTestApp();
    api = await hospitalAgent(t, ORG);
  });
  afterAll(async () => t?.close());

  it('a created Patient gets its normalized row and phonetic codes in the same transaction', async () => {
    const res = await api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(patient());
    expect(res.status).toBe(201);
    const r = await row(res.body.id);
    expect(r).toMatchObject({
      custodian_org: ORG,
      family: ['muller', 'schmidt'],
      given: ['william'],
      birth_date: '1970-03-04',
      sex: 'male',
      postal_codes: ['12345'],
      phones: ['5550102000'],
      emails: ['bill@example.org'],
      identifiers: [`http://hospital-a.example.org/mrn|MRN-${RUN}`],
    });
    // dmetaphone('muller') = MLR, ('schmidt') = XMT, ('william') = ALM.
    expect([...r!.family_codes].sort()).toEqual(['MLR', 'XMT']);
    expect(r!.given_codes).toEqual(['ALM']);
  });

  it('an update replaces the row; a delete removes it', async () => {
    const created = await api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(patient());
    const id = created.body.id as string;
    const updated = await api.put(`/fhir/Patient/${id}`).set('Content-Type', FHIR_JSON).send(patient({ id, name: [{ family: 'Meyer', given: ['Peggy'] }], gender: 'female' }));
    expect(updated.status).toBe(200);
    expect(await row(id)).toMatchObject({ family: ['meyer'], given: ['margaret'], sex: 'female', custodian_org: ORG });
    expect((await api.delete(`/fhir/Patient/${id}`)).status).toBe(200);
    expect(await row(id)).toBeUndefined();
  });

  it('a transaction Bundle indexes its Patients, and one that fails leaves no row', async () => {
    const ok = await postTransaction(api, [{ resource: patient({ id: undefined }), request: { method: 'POST', url: 'Patient' } }]);
    expect(ok.status).toBe(200);
    const okId = /Patient\/([^/]+)/.exec(ok.body.entry[0].response.location as string)![1];
    expect((await row(okId))?.family).toEqual(['muller', 'schmidt']);

    const tag = `rolled-back-${RUN}`;
    const failed = await postTransaction(api, [
      { resource: patient({ identifier: [{ system: 'urn:test', value: tag }] }), request: { method: 'POST', url: 'Patient' } },
      { resource: { resourceType: 'Observation', status: 'not-a-status', code: { text: 'x' } }, request: { method: 'POST', url: 'Observation' } },
    ]);
    expect(failed.status).toBeGreaterThanOrEqual(400);
    const rows = await t.db.query(`SELECT patient_id FROM patient_demographics WHERE identifiers && $1::text[]`, [[`urn:test|${tag}`]]);
    expect(rows).toEqual([]);
  });
});
