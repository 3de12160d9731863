import type { Resource } from '@medplum/fhirtypes';
import { buildMinimalInstance, STORABLE_RESOURCE_TYPES } from '../../src/synthetic/minimal-instance.builder';
import request from 'supertest';
import { registerTestClient } from '../support/auth';
import { FHIR_JSON } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

/** What config/hie-profiles.json requires beyond the base definition, per type. */
const HIE_PROFILE_ADDITIONS: Record<string, Record<string, unknown>> = {
  Patient: {
    identifier: [{ system: 'http://hospital-a.example.org/mrn', value: 'ALL-TYPES-1' }],
    name: [{ family: 'Every', given: ['Type'] }],
    gender: 'unknown',
  },
  // hie-consent: scope patient-privacy, LOINC 59284-0, a provision with a type, and a Patient of the
  // writer's own organization (set in beforeAll).
  Consent: {
    status: 'active',
    scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
    category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
    provision: { type: 'permit' },
  },
};

function instance(type: string, variant: number): Resource {
  return { ...buildMinimalInstance(type, variant), ...HIE_PROFILE_ADDITIONS[type] } as Resource;
}

describe('REST core for every storable R4 resource type', () => {
  let t: TestApp;
  /** SearchParameters change what the whole exchange indexes: only admins write them. */
  let admin: TestApp['api'];
  const api = (type: string): TestApp['api'] => (type === 'SearchParameter' ? admin : t.api);
  beforeAll(async () => {
    t = await createTestApp();
    const client = await registerTestClient(t, { role: 'admin', scopes: ['system/SearchParameter.cruds'], purposes: ['HSYSADMIN'] });
    admin = request.agent(t.http).set('Authorization', `Bearer ${await client.token()}`);
    const patient = await t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(instance('Patient', 0));
    HIE_PROFILE_ADDITIONS.Consent.patient = { reference: `Patient/${patient.body.id}` };
  });
  afterAll(() => t.close());

  it('covers exactly 144 types, the same the CapabilityStatement lists', async () => {
    expect(STORABLE_RESOURCE_TYPES).toHaveLength(144);
    const cs = await t.api.get('/fhir/metadata');
    expect(cs.body.rest[0].resource.map((r: { type: string }) => r.type)).toEqual([...STORABLE_RESOURCE_TYPES]);
  });

  it.each(STORABLE_RESOURCE_TYPES.filter((type) => type !== 'AuditEvent'))('%s: create, read, vread, update, history, delete, 410', async (type) => {
    const created = await api(type).post(`/fhir/${type}`).set('Content-Type', FHIR_JSON).send(instance(type, 0));
    expect({ status: created.status, issues: created.body.issue }).toEqual({ status: 201, issues: undefined });
    const id = created.body.id as string;
    expect(created.headers.location).toBe(`http://localhost:8080/fhir/${type}/${id}/_history/1`);

    const read = await api(type).get(`/fhir/${type}/${id}`);
    expect(read.status).toBe(200);
    expect(read.body.resourceType).toBe(type);
    expect(read.body.id).toBe(id);

    const updated = await api(type)
      .put(`/fhir/${type}/${id}`)
      .set('Content-Type', FHIR_JSON)
      .set('If-Match', 'W/"1"')
      .send({ ...instance(type, 1), id });
    expect({ status: updated.status, issues: updated.body.issue }).toEqual({ status: 200, issues: undefined });
    expect(updated.headers.etag).toBe('W/"2"');

    const v1 = await api(type).get(`/fhir/${type}/${id}/_history/1`);
    expect(v1.status).toBe(200);
    expect(v1.body.meta.versionId).toBe('1');
    expect(v1.body).not.toEqual(updated.body);

    const history = await api(type).get(`/fhir/${type}/${id}/_history`);
    expect(history.status).toBe(200);
    expect(history.body.total).toBe(2);
    expect(history.body.entry.map((e: { response: { etag: string } }) => e.response.etag)).toEqual(['W/"2"', 'W/"1"']);

    expect((await api(type).delete(`/fhir/${type}/${id}`)).status).toBe(200);
    const gone = await api(type).get(`/fhir/${type}/${id}`);
    expect(gone.status).toBe(410);
    expect(gone.body.issue[0].code).toBe('deleted');
  });

  it('AuditEvent: create, read; no update, patch or delete through the API (docs/audit.md)', async () => {
    const created = await t.api.post('/fhir/AuditEvent').set('Content-Type', FHIR_JSON).send(instance('AuditEvent', 0));
    expect({ status: created.status, issues: created.body.issue }).toEqual({ status: 201, issues: undefined });
    const id = created.body.id as string;
    expect((await t.api.get(`/fhir/AuditEvent/${id}`)).status).toBe(200);
    const updated = await t.api.put(`/fhir/AuditEvent/${id}`).set('Content-Type', FHIR_JSON).send({ ...instance('AuditEvent', 1), id });
    expect({ status: updated.status, code: updated.body.issue[0].code }).toEqual({ status: 403, code: 'forbidden' });
    const patched = await t.api.patch(`/fhir/AuditEvent/${id}`).set('Content-Type', 'application/json-patch+json').send([{ op: 'remove', path: '/agent' }]);
    expect(patched.status).toBe(403);
    expect((await t.api.delete(`/fhir/AuditEvent/${id}`)).status).toBe(403);
    const read = await t.api.get(`/fhir/AuditEvent/${id}`);
    expect(read.body.meta.versionId).toBe('1');
  });
});
