import request from 'supertest';
import { registerTestClient } from '../support/auth';
import { FHIR_JSON, hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

const CATEGORY = 'http://terminology.hl7.org/CodeSystem/observation-category';

/**
 * SMART v2 scope queries (`system/Observation.rs?category=laboratory`): the granted subset is all
 * a client can see, by read, search, include, `_has` and compartment search; what a restricted
 * scope cannot bound (writes, old versions) is denied outright.
 */
describe('scope restrictions (system/Observation.rs?category=laboratory)', () => {
  let t: TestApp;
  let patientId: string;
  let labId: string;
  let vitalId: string;
  let token: string;

  const observation = (category: string, text: string) => ({
    resourceType: 'Observation',
    status: 'final',
    category: [{ coding: [{ system: CATEGORY, code: category }] }],
    code: { text },
    subject: { reference: `Patient/${patientId}` },
  });
  const get = (path: string, bearer = token) => request(t.http).get(path).set('Authorization', `Bearer ${bearer}`);
  const ids = (res: request.Response, mode = 'match') =>
    (res.body.entry ?? []).filter((e: { search?: { mode: string } }) => e.search?.mode === mode).map((e: { resource: { id: string } }) => e.resource.id).sort();

  beforeAll(async () => {
    t = await createTestApp();
    patientId = (await t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(hiePatient())).body.id;
    labId = (await t.api.post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(observation('laboratory', 'potassium'))).body.id;
    vitalId = (await t.api.post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(observation('vital-signs', 'heart rate'))).body.id;
    const lab = await registerTestClient(t, {
      role: 'hospital',
      scopes: ['system/Patient.rs', 'system/Observation.rs?category=laboratory'],
    });
    const res = await request(t.http)
      .post('/oauth2/token')
      .type('form')
      .send({ grant_type: 'client_credentials', client_id: lab.clientId, client_secret: lab.secret, scope: 'system/*.rs' });
    expect(res.status).toBe(200);
    // Granted = requested ∩ registered: the wildcard request narrows to the registration.
    expect(res.body.scope).toBe('system/Patient.rs system/Observation.rs?category=laboratory');
    token = res.body.access_token;
  });
  afterAll(() => t.close());

  it('search returns only the matching category', async () => {
    const all = await get(`/fhir/Observation?subject=Patient/${patientId}`);
    expect(all.status).toBe(200);
    expect(ids(all)).toEqual([labId]);
    expect(all.text).not.toContain('heart rate');
    const vitals = await get(`/fhir/Observation?subject=Patient/${patientId}&category=vital-signs`);
    expect(vitals.status).toBe(200);
    expect(ids(vitals)).toEqual([]);
    const counted = await get(`/fhir/Observation?subject=Patient/${patientId}&_summary=count`);
    expect(counted.body.total).toBe(1);
  });

  it('read of a resource outside the restriction is 404, as if it did not exist', async () => {
    expect((await get(`/fhir/Observation/${labId}`)).status).toBe(200);
    const hidden = await get(`/fhir/Observation/${vitalId}`);
    expect(hidden.status).toBe(404);
    expect(hidden.body.issue[0].code).toBe('not-found');
    expect(hidden.text).not.toContain('heart rate');
  });

  it('includes, _has and compartment searches see the same subset', async () => {
    const withObs = await get(`/fhir/Patient?_id=${patientId}&_revinclude=Observation:subject`);
    expect(withObs.status).toBe(200);
    expect(ids(withObs)).toEqual([patientId]);
    expect(ids(withObs, 'include')).toEqual([labId]);
    const has = await get(`/fhir/Patient?_id=${patientId}&_has:Observation:subject:category=vital-signs`);
    expect(has.status).toBe(200);
    expect(ids(has)).toEqual([]);
    const compartment = await get(`/fhir/Patient/${patientId}/Observation`);
    expect(compartment.status).toBe(200);
    expect(ids(compartment)).toEqual([labId]);
  });

  it('old versions and writes cannot be bounded by a scope query, so they are denied', async () => {
    for (const path of [`/fhir/Observation/${labId}/_history/1`, `/fhir/Observation/${labId}/_history`, '/fhir/Observation/_history']) {
      const res = await get(path);
      expect(res.status).toBe(403);
      expect(res.body.issue[0].code).toBe('forbidden');
      expect(res.body.issue[0].diagnostics).toMatch(/allows only read and search/);
      expect(res.text).not.toContain('potassium');
    }
    const writer = await registerTestClient(t, { role: 'hospital', scopes: ['system/Observation.cruds?category=laboratory'] });
    const created = await request(t.http)
      .post('/fhir/Observation')
      .set('Authorization', `Bearer ${await writer.token()}`)
      .set('Content-Type', FHIR_JSON)
      .send(observation('laboratory', 'sodium'));
    expect(created.status).toBe(403);
    expect(created.body.issue[0].diagnostics).toMatch(/allows only read and search, not create/);
    const stored = await t.api.get(`/fhir/Observation?code:text=sodium`);
    expect(stored.body.entry ?? []).toEqual([]);
  });

  it('an unrestricted scope for the type lifts the restriction', async () => {
    const both = await registerTestClient(t, { role: 'hospital', scopes: ['system/Observation.rs?category=laboratory', 'system/Observation.rs'] });
    expect(ids(await get(`/fhir/Observation?subject=Patient/${patientId}`, await both.token()))).toEqual([labId, vitalId].sort());
  });

  it('registration refuses a scope query the server cannot run', async () => {
    const admin = await registerTestClient(t, { role: 'admin', scopes: ['system/Organization.cruds'], purposes: ['HSYSADMIN'] });
    const res = await request(t.http)
      .post('/admin/clients')
      .set('Authorization', `Bearer ${await admin.token()}`)
      .send({ organization: 'org-x', role: 'hospital', scopes: ['system/Observation.rs?no-such-param=1'], purposes: ['TREAT'] });
    expect(res.status).toBe(400);
    expect(res.body.issue[0].diagnostics).toMatch(/no-such-param/);
  });
});
