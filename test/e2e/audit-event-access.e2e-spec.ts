import request from 'supertest';
import { registerTestClient } from '../support/auth';
import { FHIR_JSON, hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

type Role = 'hospitalA' | 'hospitalB' | 'publicHealthClinical' | 'publicHealth' | 'auditor' | 'admin';
const ROLES: readonly Role[] = ['hospitalA', 'hospitalB', 'publicHealthClinical', 'publicHealth', 'auditor', 'admin'];

/** A minimal ATNA-style AuditEvent a hospital's own system submits, naming one patient. */
function submittedAuditEvent(patientId: string, system: string): Record<string, unknown> {
  return {
    resourceType: 'AuditEvent',
    type: { system: 'http://dicom.nema.org/resources/ontology/DCM', code: '110110', display: 'Patient Record' },
    action: 'R',
    recorded: '2026-01-02T03:04:05Z',
    outcome: '0',
    agent: [{ requestor: true, who: { display: system } }],
    source: { observer: { display: system } },
    entity: [{ what: { reference: `Patient/${patientId}` } }],
  };
}

/**
 * Issue 22 item 5: stored AuditEvents (submitted by hospitals) are read only by their custodian
 * organization and by auditors, on every path that can reach them — system-level search and
 * history, type and instance history, vread, includes, compartment search and `$everything` —
 * never listed to another hospital or to public health. Route inventory: path × role, each with
 * the exact status and the AuditEvent ids (not) returned.
 */
describe('AuditEvent access on every path (route inventory × role)', () => {
  let t: TestApp;
  const token: Partial<Record<Role, string>> = {};
  let patient = '';
  let eventA = '';
  let eventB = '';
  let started = '';

  const get = (role: Role, path: string) => request(t.http).get(path).set('Authorization', `Bearer ${token[role]}`);
  /** `AuditEvent/<id>` of every AuditEvent in a Bundle (matches, includes, history entries). */
  const auditEventIds = (res: request.Response): string[] =>
    (res.body.entry ?? [])
      .map((e: { resource?: { resourceType: string; id: string }; fullUrl?: string }) => e.resource ?? { resourceType: e.fullUrl?.split('/').slice(-2)[0], id: e.fullUrl?.split('/').slice(-1)[0] })
      .filter((r: { resourceType?: string }) => r.resourceType === 'AuditEvent')
      .map((r: { id: string }) => r.id)
      .sort();
  const stored = (...ids: string[]): string[] => [...ids].sort();

  beforeAll(async () => {
    t = await createTestApp();
    const clients = {
      hospitalA: await registerTestClient(t, { role: 'hospital', organization: 'org-audit-a' }),
      hospitalB: await registerTestClient(t, { role: 'hospital', organization: 'org-audit-b' }),
      publicHealthClinical: await registerTestClient(t, { role: 'public-health', scopes: ['system/*.rs'], purposes: ['PUBHLTH'], clinicalAccess: true }),
      publicHealth: await registerTestClient(t, { role: 'public-health', scopes: ['system/*.rs'], purposes: ['PUBHLTH'] }),
      auditor: await registerTestClient(t, { role: 'auditor', scopes: ['system/AuditEvent.rs'], purposes: ['HOPERAT'] }),
      admin: await registerTestClient(t, { role: 'admin', scopes: ['system/Organization.cruds'], purposes: ['HSYSADMIN'] }),
    };
    for (const role of ROLES) token[role] = await clients[role].token();
    started = new Date(Date.now() - 1000).toISOString();
    const post = (role: Role, body: Record<string, unknown>) =>
      request(t.http).post(`/fhir/${body.resourceType as string}`).set('Authorization', `Bearer ${token[role]}`).set('Content-Type', FHIR_JSON).send(body);
    const p = await post('hospitalA', hiePatient());
    expect(p.status).toBe(201);
    patient = p.body.id;
    const a = await post('hospitalA', submittedAuditEvent(patient, 'system-a'));
    expect(a.status).toBe(201);
    eventA = a.body.id;
    const b = await post('hospitalB', submittedAuditEvent(patient, 'system-b'));
    expect(b.status).toBe(201);
    eventB = b.body.id;
  });
  afterAll(() => t.close());

  /** Expected status per role, and for 200 the stored AuditEvents the answer lists. */
  type Expect = Record<Role, [number, string[]?]>;
  const cases = (): [string, string, Expect][] => [
    ['system search of AuditEvent', '/fhir?_type=AuditEvent', {
      hospitalA: [403], hospitalB: [403], publicHealthClinical: [403], publicHealth: [403], auditor: [403], admin: [403],
    }],
    ['system search naming AuditEvent among other types', '/fhir?_type=Patient,AuditEvent', {
      hospitalA: [403], hospitalB: [403], publicHealthClinical: [403], publicHealth: [403], auditor: [403], admin: [403],
    }],
    ['system search without _type', '/fhir', {
      hospitalA: [400], hospitalB: [400], publicHealthClinical: [400], publicHealth: [403], auditor: [403], admin: [403],
    }],
    ['system history', `/fhir/_history?_count=1000&_since=${started}`, {
      hospitalA: [200, [eventA]], hospitalB: [200, [eventB]], publicHealthClinical: [200, []], publicHealth: [403], auditor: [403], admin: [403],
    }],
    ['type history of AuditEvent', `/fhir/AuditEvent/_history?_count=1000&_since=${started}`, {
      hospitalA: [200, [eventA]], hospitalB: [200, [eventB]], publicHealthClinical: [403], publicHealth: [403], auditor: [200, [eventA, eventB]], admin: [403],
    }],
    ["read of hospital A's AuditEvent", `/fhir/AuditEvent/${eventA}`, {
      hospitalA: [200, [eventA]], hospitalB: [404], publicHealthClinical: [403], publicHealth: [403], auditor: [200, [eventA]], admin: [403],
    }],
    ["vread of hospital A's AuditEvent", `/fhir/AuditEvent/${eventA}/_history/1`, {
      hospitalA: [200, [eventA]], hospitalB: [404], publicHealthClinical: [403], publicHealth: [403], auditor: [200, [eventA]], admin: [403],
    }],
    ["instance history of hospital A's AuditEvent", `/fhir/AuditEvent/${eventA}/_history`, {
      hospitalA: [200, [eventA]], hospitalB: [404], publicHealthClinical: [403], publicHealth: [403], auditor: [200, [eventA]], admin: [403],
    }],
    ["read of hospital B's AuditEvent", `/fhir/AuditEvent/${eventB}`, {
      hospitalA: [404], hospitalB: [200, [eventB]], publicHealthClinical: [403], publicHealth: [403], auditor: [200, [eventB]], admin: [403],
    }],
    ['_revinclude=AuditEvent:*', `/fhir/Patient?_id=${patient}&_revinclude=AuditEvent:*`, {
      hospitalA: [200, []], hospitalB: [200, []], publicHealthClinical: [200, []], publicHealth: [403], auditor: [403], admin: [403],
    }],
    ['_revinclude=AuditEvent:entity', `/fhir/Patient?_id=${patient}&_revinclude=AuditEvent:entity`, {
      hospitalA: [200, []], hospitalB: [200, []], publicHealthClinical: [200, []], publicHealth: [403], auditor: [403], admin: [403],
    }],
    ['_revinclude=AuditEvent:patient', `/fhir/Patient?_id=${patient}&_revinclude=AuditEvent:patient`, {
      hospitalA: [200, []], hospitalB: [200, []], publicHealthClinical: [200, []], publicHealth: [403], auditor: [403], admin: [403],
    }],
    ['compartment search Patient/{id}/AuditEvent', `/fhir/Patient/${patient}/AuditEvent`, {
      hospitalA: [403], hospitalB: [403], publicHealthClinical: [403], publicHealth: [403], auditor: [200, []], admin: [403],
    }],
    // $everything gathers each compartment type under its type-level search right: none for AuditEvent.
    ['Patient/{id}/$everything', `/fhir/Patient/${patient}/$everything`, {
      hospitalA: [200, []], hospitalB: [200, []], publicHealthClinical: [403], publicHealth: [403], auditor: [403], admin: [403],
    }],
  ];

  it.each(ROLES)('%s: every path answers the exact status and only the AuditEvents it may read', async (role) => {
    const answers: [string, number, string[] | string | undefined][] = [];
    const expected: [string, number, string[] | string][] = [];
    for (const [name, path, want] of cases()) {
      const res = await get(role, path);
      const [status, ids] = want[role];
      const listed = res.status === 200 ? (res.body.resourceType === 'AuditEvent' ? [res.body.id] : auditEventIds(res)) : undefined;
      // A refusal is an OperationOutcome; of a 200, only the AuditEvents this test stored are compared
      // (an auditor's trail search lists the server's own records, which are not stored resources).
      const body = res.status === 200 ? listed?.filter((id: string) => id === eventA || id === eventB) : res.body.resourceType;
      answers.push([name, res.status, body]);
      expected.push([name, status, ids ? stored(...ids) : 'OperationOutcome']);
    }
    expect(answers).toEqual(expected);
  });

  it('a system search naming a type the client may not search is 403 forbidden naming _type and the type', async () => {
    const res = await get('hospitalA', '/fhir?_type=Patient,AuditEvent');
    expect(res.status).toBe(403);
    expect(res.body.issue).toEqual([
      { severity: 'error', code: 'forbidden', diagnostics: 'This client may not search AuditEvent (named in _type)', expression: ['_type'] },
    ]);
  });

  it("an auditor's compartment search of AuditEvent is the trail's patient search (AuditEvent?patient=)", async () => {
    const res = await get('auditor', `/fhir/Patient/${patient}/AuditEvent?_count=1000`);
    expect(res.status).toBe(200);
    expect(res.body.type).toBe('searchset');
    const events = (res.body.entry ?? []).map((e: { resource: { id: string; entity?: { what?: { reference?: string } }[] } }) => e.resource);
    // Hospital A created the patient and the AuditEvents naming it: the trail recorded those requests.
    expect(events.length).toBeGreaterThan(0);
    for (const e of events) expect(e.entity!.map((x: { what?: { reference?: string } }) => x.what?.reference)).toContain(`Patient/${patient}`);
  });
});
