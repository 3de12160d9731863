import request from 'supertest';
import type { Bundle, Resource } from '@medplum/fhirtypes';
import { SystemAccess, UNRESTRICTED_SYSTEM_CONTEXTS } from '../../src/fhir/pipeline/system-access';
import { buildInteraction } from '../../src/fhir/pipeline/interaction';
import { SearchService } from '../../src/fhir/search/search.service';
import { StorageSessions } from '../../src/fhir/storage/storage-session';
import { SyntheticDataGenerator } from '../../src/synthetic/synthetic-data.generator';
import { captureAuditRecords } from '../support/audit';
import { consentResource } from '../support/consent';
import { registerTestClient } from '../support/auth';
import { FHIR_JSON } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

const RUN = Date.now().toString(36);
const HOSPITAL = `sysaccess-hosp-${RUN}`;
const PUBHLTH = { system: 'http://terminology.hl7.org/CodeSystem/v3-ActReason', code: 'PUBHLTH' };
const TYPES = ['Patient', 'Observation', 'Condition', 'Immunization', 'Encounter', 'Coverage', 'Organization', 'Practitioner'];

/**
 * Issue 21: consent-bounded system access. `SystemAccess.mintFor('PUBHLTH')` is the way internal
 * work (public-health jobs) reads resource content: it sees exactly what a public-health client
 * registered with clinical access, `system/*.rs` and purpose PUBHLTH sees, on generated data with
 * permit and deny Consents; the unrestricted contexts are a closed, named list.
 */
describe('system access bounded by purpose (mintFor)', () => {
  let t: TestApp;
  const gen = new SyntheticDataGenerator({ seed: 21, patients: 10, idPrefix: `sa${RUN}` });
  const resources: Resource[] = [...gen.resources()];
  // Patients 0-2 permit public-health use, 3-4 deny all sharing, 5-9 have no Consent.
  const permitted = [0, 1, 2].map((n) => gen.patientId(n));

  beforeAll(async () => {
    t = await createTestApp();
    const hospital = await registerTestClient(t, { role: 'hospital', organization: HOSPITAL, scopes: ['system/*.cruds'] });
    const token = await hospital.token();
    for (const bundle of gen.transactionBundles()) {
      const res = await request(t.http).post('/fhir').set('Authorization', `Bearer ${token}`).set('Content-Type', FHIR_JSON).send(bundle);
      if (res.status !== 200) throw new Error(`load: ${res.status} ${JSON.stringify(res.body).slice(0, 500)}`);
    }
    const consents: Bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        ...permitted.map((p) => consentResource(p, { type: 'permit', purpose: [PUBHLTH] })),
        ...[3, 4].map((n) => consentResource(gen.patientId(n))),
      ].map((resource) => ({ resource: resource as unknown as Resource, request: { method: 'POST' as const, url: 'Consent' } })),
    };
    const res = await request(t.http).post('/fhir').set('Authorization', `Bearer ${token}`).set('Content-Type', FHIR_JSON).send(consents);
    expect(res.status).toBe(200);
  });
  afterAll(() => t.close());

  /** Resources of `type` the permitted patients' compartments hold, counted from the generator's output. */
  function expectedCount(type: string): number {
    const ofType = resources.filter((r) => r.resourceType === type);
    if (type === 'Organization' || type === 'Practitioner') return ofType.length; // no patient compartment: not patient data
    return ofType.filter((r) => (type === 'Patient' ? permitted.includes(r.id!) : permitted.some((p) => JSON.stringify(r).includes(`"Patient/${p}"`)))).length;
  }

  it('sees exactly what a public-health client with clinical access, system/*.rs and PUBHLTH sees', async () => {
    const agency = await registerTestClient(t, { role: 'public-health', organization: `sysaccess-agency-${RUN}`, scopes: ['system/*.rs'], purposes: ['PUBHLTH'], clinicalAccess: true });
    const token = await agency.token('system/*.rs', 'PUBHLTH');
    const ctx = await t.app.get(SystemAccess).mintFor('PUBHLTH');
    expect(ctx.system).toBeUndefined(); // not an unrestricted system context: reindex and compartmentsOf refuse it
    expect(ctx.principal).toMatchObject({ kind: 'system', clientId: 'system:purpose-PUBHLTH', purposeOfUse: 'PUBHLTH', role: 'public-health' });
    const sessions = t.app.get(StorageSessions);
    const search = t.app.get(SearchService);
    for (const type of TYPES) {
      const res = await request(t.http).get(`/fhir/${type}?_summary=count`).set('Authorization', `Bearer ${token}`);
      expect({ type, status: res.status }).toEqual({ type, status: 200 });
      const internal = await sessions.run({ transactional: false }, (session) =>
        search.search(ctx, buildInteraction('search-type', { resourceType: type, path: `/${type}`, query: { _summary: 'count' } }), session.tx),
      );
      const expected = expectedCount(type);
      expect({ type, client: res.body.total, system: (internal.resource as Bundle).total }).toEqual({ type, client: expected, system: expected });
    }
    // The bound matters: the generated data holds more than the permitted patients' Observations.
    expect(resources.filter((r) => r.resourceType === 'Observation').length).toBeGreaterThan(expectedCount('Observation'));
    expect(expectedCount('Observation')).toBeGreaterThan(0);
  });

  it('is audited by name with the consent basis, once per mint', async () => {
    const records = captureAuditRecords(t.app);
    await t.app.get(SystemAccess).mintFor('PUBHLTH');
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ kind: 'system-access', subtype: 'purpose-PUBHLTH', system: 'purpose-PUBHLTH', outcome: 'success' });
    expect(records[0].accessBasis).toEqual([expect.stringMatching(/^consent: policy opt-out \(PUBHLTH only where a Consent permits\)/)]);
  });

  it('refuses a purpose without a defined view, and an unrestricted context not on the named list', async () => {
    const system = t.app.get(SystemAccess);
    await expect(system.mintFor('HPAYMT')).rejects.toThrow('No consent-bounded system view is defined for purpose HPAYMT');
    await expect(system.mint('export' as never)).rejects.toThrow('export is not a named unrestricted system context');
    expect(Object.keys(UNRESTRICTED_SYSTEM_CONTEXTS).sort()).toEqual(['aggregate-statistics', 'case-reporting', 'custodian-transfer', 'identity-matching', 'reindex', 'reindex-cli', 'subscription-status']);
  });
});
