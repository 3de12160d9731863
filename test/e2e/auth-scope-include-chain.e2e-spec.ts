import request from 'supertest';
import { registerTestClient } from '../support/auth';
import { FHIR_JSON, hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

const CATEGORY = 'http://terminology.hl7.org/CodeSystem/observation-category';

/**
 * `_include` and chained parameters under scope queries on BOTH ends of a reference
 * (`system/Patient.rs?gender=female system/Observation.rs?category=laboratory`): an included or
 * chained-through resource outside its type's restriction is as absent as it is to a read.
 */
describe('_include and chains under scope queries', () => {
  let t: TestApp;
  let token: string;
  const ids: Record<string, string> = {};

  const get = (path: string) => request(t.http).get(path).set('Authorization', `Bearer ${token}`);
  const of = (res: request.Response, mode: string) =>
    (res.body.entry ?? [])
      .filter((e: { search?: { mode: string } }) => e.search?.mode === mode)
      .map((e: { resource: { resourceType: string; id: string } }) => `${e.resource.resourceType}/${e.resource.id}`)
      .sort();

  beforeAll(async () => {
    t = await createTestApp();
    const create = async (body: Record<string, unknown>) => {
      const res = await t.api.post(`/fhir/${String(body.resourceType)}`).set('Content-Type', FHIR_JSON).send(body);
      expect(res.status).toBe(201);
      return res.body.id as string;
    };
    ids.female = await create(hiePatient({ gender: 'female', name: [{ family: 'Shown' }], identifier: [{ system: 'urn:scope', value: 'F-1' }] }));
    ids.male = await create(hiePatient({ gender: 'male', name: [{ family: 'Concealed' }], identifier: [{ system: 'urn:scope', value: 'M-1' }] }));
    const obs = (patient: string, category: string, text: string) => ({
      resourceType: 'Observation',
      status: 'final',
      category: [{ coding: [{ system: CATEGORY, code: category }] }],
      code: { text },
      subject: { reference: `Patient/${patient}` },
    });
    ids.labF = await create(obs(ids.female, 'laboratory', 'sodium'));
    ids.labM = await create(obs(ids.male, 'laboratory', 'potassium'));
    ids.vitalF = await create(obs(ids.female, 'vital-signs', 'pulse'));
    const client = await registerTestClient(t, { role: 'hospital', scopes: ['system/Patient.rs?gender=female', 'system/Observation.rs?category=laboratory'] });
    token = await client.token();
  });
  afterAll(() => t.close());

  it('_include brings the subject only where the subject is inside the Patient restriction', async () => {
    const res = await get(`/fhir/Observation?_id=${ids.labF},${ids.labM},${ids.vitalF}&_include=Observation:subject`);
    expect(res.status).toBe(200);
    expect(of(res, 'match')).toEqual([`Observation/${ids.labF}`, `Observation/${ids.labM}`].sort());
    expect(of(res, 'include')).toEqual([`Patient/${ids.female}`]);
    expect(res.text).not.toContain('Concealed');
    expect(res.text).not.toContain('pulse');
  });

  it('_revinclude from Patient brings only laboratory Observations of visible patients', async () => {
    const res = await get(`/fhir/Patient?_id=${ids.female},${ids.male}&_revinclude=Observation:subject`);
    expect(res.status).toBe(200);
    expect(of(res, 'match')).toEqual([`Patient/${ids.female}`]);
    expect(of(res, 'include')).toEqual([`Observation/${ids.labF}`]);
  });

  it('a chain through a Patient outside the restriction matches nothing; through a visible one it matches', async () => {
    const hidden = await get(`/fhir/Observation?subject:Patient.identifier=urn:scope|M-1`);
    expect(hidden.status).toBe(200);
    expect(of(hidden, 'match')).toEqual([]);
    const byGender = await get(`/fhir/Observation?subject:Patient.gender=male`);
    expect(of(byGender, 'match')).toEqual([]);
    const visible = await get(`/fhir/Observation?subject:Patient.identifier=urn:scope|F-1`);
    expect(visible.status).toBe(200);
    expect(of(visible, 'match')).toEqual([`Observation/${ids.labF}`]);
    // The unrestricted client sees both ends: the data is there, the scope hides it.
    expect(of(await t.api.get(`/fhir/Observation?subject:Patient.identifier=urn:scope|M-1`), 'match')).toEqual([`Observation/${ids.labM}`]);
  });

  it('a reverse chain (_has) counts only Observations inside the Observation restriction', async () => {
    const res = await get(`/fhir/Patient?_has:Observation:subject:code:text=pulse`);
    expect(res.status).toBe(200);
    expect(of(res, 'match')).toEqual([]);
    const lab = await get(`/fhir/Patient?_has:Observation:subject:code:text=sodium`);
    expect(of(lab, 'match')).toEqual([`Patient/${ids.female}`]);
  });
});
