import request from 'supertest';
import type { AuditRecord } from '../../src/fhir/pipeline/audit-record';
import { PATIENT_LINK_MAX } from '../../src/consent/patient-link-materializer';
import { captureAuditRecords } from '../support/audit';
import { registerTestClient } from '../support/auth';
import { createdId, FHIR_JSON, hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

const RUN = Date.now().toString(36);
const ORG = [1, 2, 3, 4].map((n) => `links-${n}-${RUN}`);
const ACT = 'http://terminology.hl7.org/CodeSystem/v3-ActCode';
const HIV = { system: ACT, code: 'HIV' };

type Send = (m: 'get' | 'post' | 'put' | 'delete', path: string) => request.Test;

function consent(patient: string, provision: Record<string, unknown>): Record<string, unknown> {
  return {
    resourceType: 'Consent',
    status: 'active',
    scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
    category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
    patient: { reference: patient },
    dateTime: '2026-01-01T00:00:00Z',
    policyRule: { coding: [{ system: ACT, code: 'OPTOUT' }] },
    provision,
  };
}

const link = (...ids: string[]) => ids.map((id) => ({ other: { reference: `Patient/${id}` }, type: 'seealso' }));

/**
 * Patient.link (docs/consent.md, Linked records): a patient's denial follows the person to the
 * linked records other organizations hold; permits do not; links are symmetric, transitive and
 * bounded; unlinking restores access on the next request. And Consents written in transaction
 * Bundles before their Patient (in an earlier bulk chunk, or earlier in one chunk).
 */
describe('consent over linked Patient records', () => {
  let t: TestApp;
  const as: Send[] = [];
  const records: AuditRecord[] = [];

  const patient = (org: number, name: string, extra: Record<string, unknown> = {}) =>
    as[org]('post', '/fhir/Patient').set('Content-Type', FHIR_JSON).send(hiePatient({ name: [{ family: `Link${name}${RUN}` }], ...extra })).then(createdId);
  const observation = (org: number, p: string, security: unknown[] = []) =>
    as[org]('post', '/fhir/Observation').set('Content-Type', FHIR_JSON).send({ resourceType: 'Observation', status: 'final', meta: { security }, code: { text: 'link test' }, subject: { reference: `Patient/${p}` } }).then(createdId);
  const relinkPatient = async (org: number, id: string, links: string[]) => {
    const current = await as[org]('get', `/fhir/Patient/${id}`);
    const res = await as[org]('put', `/fhir/Patient/${id}`).set('Content-Type', FHIR_JSON).send({ ...current.body, link: links.length ? link(...links) : undefined });
    expect(res.status).toBe(200);
  };
  /** Observation ids of these patients the organization sees, with the search's _total. */
  async function visible(org: number, patients: string[]): Promise<{ total: number; ids: string[] }> {
    const res = await as[org]('get', `/fhir/Observation?subject=${patients.map((p) => `Patient/${p}`).join(',')}&_total=accurate&_count=100`);
    expect(res.status).toBe(200);
    return { total: res.body.total, ids: (res.body.entry ?? []).map((e: { resource: { id: string } }) => e.resource.id).sort() };
  }
  /** The stored closure rows of these patients, as `patient>linked`, sorted. */
  const closure = async (ids: string[]) =>
    (await t.db.query(`SELECT patient_id, linked_id FROM patient_link WHERE patient_id = ANY($1)`, [ids])).map((r: { patient_id: string; linked_id: string }) => `${r.patient_id}>${r.linked_id}`).sort();
  /** Every ordered pair of distinct members of each linked set, as `closure` gives them. */
  const pairsOf = (...sets: string[][]) => sets.flatMap((set) => set.flatMap((x) => set.filter((y) => y !== x).map((y) => `${x}>${y}`))).sort();

  beforeAll(async () => {
    t = await createTestApp();
    for (const org of ORG) {
      const client = await registerTestClient(t, { role: 'hospital', organization: org, scopes: ['system/*.cruds'], purposes: ['TREAT'] });
      const token = await client.token('system/*.cruds', 'TREAT');
      as.push((m, path) => request(t.http)[m](path).set('Authorization', `Bearer ${token}`));
    }
    captureAuditRecords(t.app, records);
  }, 60_000);
  afterAll(() => t?.close());

  it("a deny on Patient A (organization 1) hides linked Patient B's data (organization 2) from organization 3; unlinking restores it", async () => {
    const a = await patient(0, 'A');
    const b = await patient(1, 'B', { link: link(a) });
    const obsA = await observation(0, a);
    const obsB = [await observation(1, b), await observation(1, b)].sort();
    expect(await closure([a, b])).toEqual(pairsOf([a, b]));
    expect(await visible(2, [a, b])).toEqual({ total: 3, ids: [obsA, ...obsB].sort() });

    const c = await createdId(await as[0]('post', '/fhir/Consent').set('Content-Type', FHIR_JSON).send(consent(`Patient/${a}`, { type: 'deny' })));
    expect(await visible(2, [a, b])).toEqual({ total: 0, ids: [] });
    records.length = 0;
    expect((await as[2]('get', `/fhir/Observation/${obsB[0]}`)).status).toBe(404);
    // The audit record names A's Consent as what decided for B's record.
    expect(records.filter((r) => r.kind === 'read').map((r) => r.accessBasis)).toEqual([
      [`consent: policy opt-out (TREAT shared unless denied); Observation/${obsB[0]}: Patient/${b} by Consent/${c}/_history/1#provision deny`],
    ]);
    expect((await as[2]('get', `/fhir/Patient/${b}`)).status).toBe(404);
    // Organization 2 still sees its own records.
    expect(await visible(1, [b])).toEqual({ total: 2, ids: obsB });
    expect((await as[2]('get', `/fhir/Observation?_id=${obsB.join(',')}&_total=accurate`)).body.total).toBe(0);

    await relinkPatient(1, b, []);
    expect(await closure([a, b])).toEqual([]);
    expect(await visible(2, [a, b])).toEqual({ total: 2, ids: obsB });
    expect((await as[2]('get', `/fhir/Observation/${obsB[0]}`)).status).toBe(200);
    // Linking again from A's side (the other direction) hides B's data again.
    await relinkPatient(0, a, [b]);
    expect(await closure([a, b])).toEqual(pairsOf([a, b]));
    expect(await visible(2, [a, b])).toEqual({ total: 0, ids: [] });
    // Deleting the Consent opens both records.
    expect((await as[0]('delete', `/fhir/Consent/${c}`)).status).toBe(200);
    expect(await visible(2, [a, b])).toEqual({ total: 3, ids: [obsA, ...obsB].sort() });
  });

  it('links are transitive and may form cycles; breaking edges splits the linked set exactly', async () => {
    const d1 = await patient(0, 'D1');
    const d2 = await patient(1, 'D2', { link: link(d1) });
    const d3 = await patient(3, 'D3', { link: link(d2) });
    await relinkPatient(0, d1, [d3]); // D1 -> D3 closes the cycle D1 - D2 - D3 - D1
    expect(await closure([d1, d2, d3])).toEqual(pairsOf([d1, d2, d3]));
    const o2 = await observation(1, d2);
    const o3 = await observation(3, d3);
    expect(await visible(2, [d2, d3])).toEqual({ total: 2, ids: [o2, o3].sort() });
    await createdId(await as[0]('post', '/fhir/Consent').set('Content-Type', FHIR_JSON).send(consent(`Patient/${d1}`, { type: 'deny' })));
    expect(await visible(2, [d2, d3])).toEqual({ total: 0, ids: [] });

    // D2 drops its link to D1: D3 -> D2 and D1 -> D3 still join all three.
    await relinkPatient(1, d2, []);
    expect(await closure([d1, d2, d3])).toEqual(pairsOf([d1, d2, d3]));
    expect(await visible(2, [d2, d3])).toEqual({ total: 0, ids: [] });
    // D3 drops its link to D2: D2 is on its own, D1 - D3 stay one person.
    await relinkPatient(3, d3, []);
    expect(await closure([d1, d2, d3])).toEqual(pairsOf([d1, d3]));
    expect(await visible(2, [d2, d3])).toEqual({ total: 1, ids: [o2] });
    // A self link is not a link between records.
    await relinkPatient(1, d2, [d2]);
    expect(await closure([d2])).toEqual([]);
  });

  it("a linked record's permit does not open another organization's record (only denials follow the person)", async () => {
    const e1 = await patient(0, 'E1');
    const e2 = await patient(1, 'E2', { link: link(e1) });
    const hivE1 = await observation(0, e1, [HIV]);
    const hivE2 = await observation(1, e2, [HIV]);
    // Organization 2 permits organization 3 HIV data on its record E2: E2's own data opens, E1's does not.
    await createdId(
      await as[1]('post', '/fhir/Consent').set('Content-Type', FHIR_JSON).send(
        consent(`Patient/${e2}`, { type: 'permit', actor: [{ role: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'IRCP' }] }, reference: { reference: `Organization/${ORG[2]}` } }], securityLabel: [HIV] }),
      ),
    );
    expect(await visible(2, [e1, e2])).toEqual({ total: 1, ids: [hivE2] });
    expect((await as[2]('get', `/fhir/Observation/${hivE1}`)).status).toBe(404);
  });

  it(`refuses a Patient linking more than ${PATIENT_LINK_MAX} records with 422, storing nothing`, async () => {
    const others = Array.from({ length: PATIENT_LINK_MAX + 1 }, (_, i) => `many-${RUN}-${i}`);
    const res = await as[0]('post', '/fhir/Patient').set('Content-Type', FHIR_JSON).send(hiePatient({ name: [{ family: `Many${RUN}` }], link: link(...others) }));
    expect(res.status).toBe(422);
    expect(res.body.issue[0]).toMatchObject({ code: 'business-rule', expression: ['Patient.link'] });
    expect(res.body.issue[0].diagnostics).toMatch(/at most 101$/);
    expect((await as[0]('get', `/fhir/Patient?family=Many${RUN}&_total=accurate`)).body.total).toBe(0);
    expect(await closure(others)).toEqual([]);
  });

  describe('Consents in transaction Bundles before their Patient', () => {
    const entryOf = (fullUrl: string, resource: Record<string, unknown>) => ({ fullUrl, resource, request: { method: 'POST', url: resource.resourceType } });
    const provisions = async (patientId: string) =>
      Number((await t.db.query(`SELECT count(*) AS n FROM consent_provision WHERE patient_id = $1 AND NOT permit`, [patientId]))[0].n);

    it('a Consent in an earlier bulk chunk (over 500 creates) than its new Patient is written and enforced', async () => {
      const p = 'urn:uuid:1b5c2a0e-0000-4000-8000-000000000001';
      const entries = [
        entryOf('urn:uuid:1b5c2a0e-0000-4000-8000-000000000002', consent(p, { type: 'deny' })),
        ...Array.from({ length: 520 }, (_, i) =>
          entryOf(`urn:uuid:1b5c2a0e-0000-4000-8000-1${String(i).padStart(11, '0')}`, { resourceType: 'Observation', status: 'final', code: { text: `bulk ${i}` }, subject: { reference: p } }),
        ),
        entryOf(p, hiePatient({ name: [{ family: `Bulk${RUN}` }] })),
      ];
      const res = await as[0]('post', '/fhir').set('Content-Type', FHIR_JSON).send({ resourceType: 'Bundle', type: 'transaction', entry: entries });
      expect({ status: res.status, issue: res.body.issue }).toEqual({ status: 200, issue: undefined });
      expect(res.body.entry.every((e: { response: { status: string } }) => e.response.status === '201 Created')).toBe(true);
      const patientId = /Patient\/([^/]+)/.exec(res.body.entry[521].response.location)![1];
      expect(await provisions(patientId)).toBe(1);
      expect((await as[0]('get', `/fhir/Observation?subject=Patient/${patientId}&_total=accurate&_count=1`)).body.total).toBe(520);
      expect((await as[2]('get', `/fhir/Observation?subject=Patient/${patientId}&_total=accurate&_count=1`)).body.total).toBe(0);
      // Index rows of every chunk were written (searched above by subject); the Consent's too.
      expect((await as[0]('get', `/fhir/Consent?patient=Patient/${patientId}&_total=accurate`)).body.total).toBe(1);
    }, 120_000);

    it('a small transaction with the Consent before its Patient is written, and the other order too', async () => {
      for (const order of ['consent-first', 'patient-first']) {
        const p = `urn:uuid:2c6d3b1f-0000-4000-8000-00000000000${order === 'consent-first' ? 1 : 2}`;
        const c = entryOf(`urn:uuid:2c6d3b1f-0000-4000-8000-00000000001${order === 'consent-first' ? 1 : 2}`, consent(p, { type: 'deny' }));
        const pt = entryOf(p, hiePatient({ name: [{ family: `Small${order}${RUN}` }] }));
        const res = await as[0]('post', '/fhir').set('Content-Type', FHIR_JSON).send({ resourceType: 'Bundle', type: 'transaction', entry: order === 'consent-first' ? [c, pt] : [pt, c] });
        expect({ order, status: res.status, statuses: res.body.entry?.map((e: { response: { status: string } }) => e.response.status) }).toEqual({ order, status: 200, statuses: ['201 Created', '201 Created'] });
        const patientId = /Patient\/([^/]+)/.exec(res.body.entry[order === 'consent-first' ? 1 : 0].response.location)![1];
        expect(await provisions(patientId)).toBe(1);
        expect((await as[2]('get', `/fhir/Patient/${patientId}`)).status).toBe(404);
      }
    });

    it("a Consent for another organization's Patient in a bulk transaction is still refused with 403, storing nothing", async () => {
      const other = await patient(1, 'Other');
      const entries = [
        entryOf('urn:uuid:3d7e4c20-0000-4000-8000-000000000001', consent(`Patient/${other}`, { type: 'deny' })),
        ...Array.from({ length: 505 }, (_, i) => entryOf(`urn:uuid:3d7e4c20-0000-4000-8000-1${String(i).padStart(11, '0')}`, { resourceType: 'Basic', code: { text: `refused ${RUN}` } })),
      ];
      const res = await as[0]('post', '/fhir').set('Content-Type', FHIR_JSON).send({ resourceType: 'Bundle', type: 'transaction', entry: entries });
      expect(res.status).toBe(403);
      expect(res.body.issue[0].code).toBe('forbidden');
      expect(await provisions(other)).toBe(0);
      expect(Number((await t.db.query(`SELECT count(*) AS n FROM resource WHERE resource_type = 'Basic' AND content->'code'->>'text' = $1`, [`refused ${RUN}`]))[0].n)).toBe(0);
    }, 120_000);
  });
});
