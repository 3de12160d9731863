import { randomUUID } from 'node:crypto';
import request from 'supertest';
import type { AuditEvent, Bundle } from '@medplum/fhirtypes';
import { registerTestClient, TestClient } from '../support/auth';
import { FHIR_JSON, hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

/**
 * A refused or failed Bundle entry is audited like the same request sent alone: it names the
 * resource asked for and whose data it is, so it appears in `Patient/$access-report` and in
 * `AuditEvent?patient=` / `?entity=` (docs/audit.md).
 */
describe('audit of refused batch and transaction entries', () => {
  let t: TestApp;
  let owner: TestClient;
  /** A hospital client whose scopes do not cover Patient: every Patient entry of its is refused. */
  let narrow: TestClient;
  let narrowToken: string;
  let auditorToken: string;
  let patientId: string;
  const org = `org-entries-${randomUUID().slice(0, 8)}`;

  beforeAll(async () => {
    t = await createTestApp();
    owner = await registerTestClient(t, { role: 'hospital', organization: org });
    narrow = await registerTestClient(t, { role: 'hospital', organization: `${org}-b`, scopes: ['system/Observation.cruds'] });
    narrowToken = await narrow.token();
    const auditor = await registerTestClient(t, { role: 'auditor', scopes: ['system/AuditEvent.rs'], purposes: ['HOPERAT'] });
    auditorToken = await auditor.token();
    const created = await request(t.http)
      .post('/fhir/Patient')
      .set('Authorization', `Bearer ${await owner.token()}`)
      .set('Content-Type', FHIR_JSON)
      .send(hiePatient({ managingOrganization: { reference: `Organization/${org}` } }));
    expect(created.status).toBe(201);
    patientId = created.body.id;
  });
  afterAll(() => t.close());

  const rid = (what: string): string => `${what}-${randomUUID().slice(0, 18)}`;
  const asNarrow = (r: request.Test, requestId: string) => r.set('Authorization', `Bearer ${narrowToken}`).set('X-Request-Id', requestId);
  const asAuditor = (path: string) => request(t.http).get(path).set('Authorization', `Bearer ${auditorToken}`);
  async function eventsOf(requestId: string): Promise<AuditEvent[]> {
    const rows: { content: AuditEvent }[] = await t.db.query(
      `SELECT content FROM audit_event WHERE content::jsonb @> jsonb_build_object('entity', jsonb_build_array(jsonb_build_object('what', jsonb_build_object('identifier', jsonb_build_object('value', $1::text))))) ORDER BY seq`,
      [requestId],
    );
    return rows.map((r) => r.content);
  }
  /** The record of one entry (its correlation entity says `Bundle.entry[n]`). */
  async function entryEvent(requestId: string, index: number): Promise<AuditEvent> {
    const events = (await eventsOf(requestId)).filter((e) => e.entity!.some((x) => x.description === `Bundle.entry[${index}]`));
    expect(events).toHaveLength(1);
    return events[0];
  }
  /** What an auditor finds of the record: its resource and patient entities, and its outcome. */
  const target = (e: AuditEvent) => ({
    outcome: `${e.outcome} ${e.outcomeDesc}`,
    subtype: e.subtype!.map((c) => c.code),
    refs: e.entity!.map((x) => x.what?.reference).filter(Boolean),
    roles: e.entity!.filter((x) => x.what?.reference).map((x) => x.role?.code),
  });
  const statuses = (b: Bundle) => b.entry!.map((e) => e.response?.status?.split(' ')[0]);
  const bundleOf = (type: 'batch' | 'transaction', entry: unknown[]) => ({ resourceType: 'Bundle', type, entry });

  it('a refused read entry of a batch names the resource and its patient, exactly as the refused direct read does', async () => {
    const direct = rid('direct');
    expect((await asNarrow(request(t.http).get(`/fhir/Patient/${patientId}`), direct)).status).toBe(403);
    const [directEvent] = await eventsOf(direct);

    const batch = rid('batch');
    const res = await asNarrow(request(t.http).post('/fhir'), batch)
      .set('Content-Type', FHIR_JSON)
      .send(bundleOf('batch', [{ request: { method: 'GET', url: `Patient/${patientId}` } }, { request: { method: 'GET', url: 'Observation?_count=1' } }]));
    expect(res.status).toBe(200);
    expect(statuses(res.body as Bundle)).toEqual(['403', '200']);
    const entryRecord = await entryEvent(batch, 0);
    expect(target(entryRecord)).toEqual({ outcome: '4 403 forbidden', subtype: ['read'], refs: [`Patient/${patientId}`, `Patient/${patientId}`], roles: ['1', '4'] });
    expect(target(entryRecord)).toEqual(target(directEvent));
  });

  it('a refused write entry of a batch (update, delete) names its target too', async () => {
    const batch = rid('batch-w');
    const res = await asNarrow(request(t.http).post('/fhir'), batch)
      .set('Content-Type', FHIR_JSON)
      .send(
        bundleOf('batch', [
          { request: { method: 'PUT', url: `Patient/${patientId}` }, resource: hiePatient({ id: patientId, gender: 'other' }) },
          { request: { method: 'DELETE', url: `Patient/${patientId}` } },
        ]),
      );
    expect(res.status).toBe(200);
    expect(statuses(res.body as Bundle)).toEqual(['403', '403']);
    expect(target(await entryEvent(batch, 0))).toEqual({ outcome: '4 403 forbidden', subtype: ['update'], refs: [`Patient/${patientId}`, `Patient/${patientId}`], roles: ['1', '4'] });
    expect(target(await entryEvent(batch, 1))).toEqual({ outcome: '4 403 forbidden', subtype: ['delete'], refs: [`Patient/${patientId}`, `Patient/${patientId}`], roles: ['1', '4'] });
    const [{ gender }] = await t.db.query(`SELECT content->>'gender' AS gender FROM resource WHERE resource_type = 'Patient' AND id = $1`, [patientId]);
    expect(gender).not.toBe('other');
  });

  it('a transaction that fails on one entry records that entry with its target', async () => {
    const tx = rid('tx');
    const res = await asNarrow(request(t.http).post('/fhir'), tx)
      .set('Content-Type', FHIR_JSON)
      .send(
        bundleOf('transaction', [
          { fullUrl: 'urn:uuid:0b6c9f2e-3d61-4a57-9d3c-1b7f7c1e0a01', request: { method: 'POST', url: 'Observation' }, resource: { resourceType: 'Observation', status: 'final', code: { text: 'x' } } },
          { request: { method: 'GET', url: `Patient/${patientId}` } },
        ]),
      );
    expect(res.status).toBe(403);
    expect(res.body.issue[0].code).toBe('forbidden');
    expect(target(await entryEvent(tx, 1))).toEqual({ outcome: '4 403 forbidden', subtype: ['read'], refs: [`Patient/${patientId}`, `Patient/${patientId}`], roles: ['1', '4'] });
  });

  it('the entries appear in Patient/$access-report and in AuditEvent?patient= and ?entity=', async () => {
    const requestIdsOf = (events: AuditEvent[]) =>
      events
        .filter((e) => e.agent![0].who!.identifier!.value === narrow.clientId)
        .map((e) => [e.subtype![0].code, e.entity!.find((x) => x.description?.startsWith('Bundle.entry'))?.description ?? 'direct'])
        .sort();
    // Every refused access of this client so far: 1 direct read, 3 batch entries, 1 transaction entry.
    const expected = [
      ['delete', 'Bundle.entry[1]'],
      ['read', 'Bundle.entry[0]'],
      ['read', 'Bundle.entry[1]'],
      ['read', 'direct'],
      ['update', 'Bundle.entry[0]'],
    ];
    const report = await asAuditor(`/fhir/Patient/${patientId}/$access-report`);
    expect(report.status).toBe(200);
    expect(requestIdsOf((report.body as Bundle<AuditEvent>).entry!.map((e) => e.resource!))).toEqual(expected);
    for (const query of [`patient=${patientId}`, `entity=Patient/${patientId}`]) {
      const res = await asAuditor(`/fhir/AuditEvent?${query}&agent=${narrow.clientId}&_count=100`);
      expect(res.status).toBe(200);
      expect({ query, found: requestIdsOf((res.body as Bundle<AuditEvent>).entry!.map((e) => e.resource!)) }).toEqual({ query, found: expected });
    }
  });
});
