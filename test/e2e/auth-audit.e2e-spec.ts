import { ThrottlerStorage } from '@nestjs/throttler';
import { PostgresThrottlerStorage } from '../../src/auth/rate-limit.storage';
import request from 'supertest';
import type { AuditRecord } from '../../src/fhir/pipeline/audit-record';
import * as logAudit from '../../src/audit/log-audit.stage';
import { captureAuditRecords } from '../support/audit';
import { registerTestClient } from '../support/auth';
import { FHIR_JSON, hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

/** Token issuance and every denial reach the pipeline's audit stage, with ids only (no PHI). */
describe('audit of token issuance and denials', () => {
  let t: TestApp;
  const records: AuditRecord[] = [];
  const previous = process.env.RATE_LIMIT_PER_MINUTE;

  beforeAll(async () => {
    process.env.RATE_LIMIT_PER_MINUTE = '8';
    t = await createTestApp();
    // The file has its own database; a pinned clock keeps the whole file in one rate-limit window,
    // so the IP-keyed token requests below add up the same way at any wall-clock time.
    (t.app.get(ThrottlerStorage) as PostgresThrottlerStorage).clock = () => new Date('2026-01-05T10:00:30.000Z');
    captureAuditRecords(t.app, records);
  });
  afterAll(async () => {
    if (previous === undefined) delete process.env.RATE_LIMIT_PER_MINUTE;
    else process.env.RATE_LIMIT_PER_MINUTE = previous;
    await t.close();
  });
  beforeEach(() => {
    records.length = 0;
  });
  afterEach(() => {
    jest.mocked(logAudit.takeRequestAuditFields).mockRestore?.();
  });

  const summary = (r: AuditRecord) => ({
    client: r.principal.clientId ?? r.principal.kind,
    kind: r.kind,
    operation: r.subtype,
    type: r.resourceType,
    outcome: r.outcome,
    status: r.status,
  });

  it('records issued and refused tokens', async () => {
    const c = await registerTestClient(t, { role: 'hospital', scopes: ['system/Patient.rs'] });
    await c.token();
    await request(t.http).post('/oauth2/token').type('form').send({ grant_type: 'client_credentials', client_id: c.clientId, client_secret: 'wrong', scope: 'system/Patient.rs' });
    expect(records.map(summary)).toEqual([
      { client: c.clientId, kind: 'token', operation: undefined, type: undefined, outcome: 'success', status: 200 },
      { client: 'anonymous', kind: 'token', operation: undefined, type: undefined, outcome: 'failure', status: 401 },
    ]);
    // The refused request's claimed client id is kept apart from the (anonymous) principal.
    expect(records.map((r) => r.claimedClientId)).toEqual([undefined, c.clientId]);
  });

  it('records the client id a refused token request claimed, by Basic, form or assertion, and nothing else', async () => {
    const basic = Buffer.from('hospital-x:wrong').toString('base64');
    await request(t.http).post('/oauth2/token').set('Authorization', `Basic ${basic}`).type('form').send({ grant_type: 'client_credentials' });
    const assertion = ['{"alg":"RS384"}', '{"iss":"lab-y","sub":"lab-y"}'].map((p) => Buffer.from(p).toString('base64url')).join('.') + '.c2ln';
    await request(t.http)
      .post('/oauth2/token')
      .type('form')
      .send({ grant_type: 'client_credentials', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: assertion });
    await request(t.http).post('/oauth2/token').type('form').send({ grant_type: 'client_credentials', client_id: 'Anna Müller <x>', client_secret: 'x' });
    expect(records.map((r) => [r.principal.kind, r.outcome, r.claimedClientId])).toEqual([
      ['anonymous', 'failure', 'hospital-x'],
      ['anonymous', 'failure', 'lab-y'],
      ['anonymous', 'failure', undefined],
    ]);
  });

  it('records each denial: no token, scope, role, break-the-glass, admin API', async () => {
    const narrow = await registerTestClient(t, { role: 'hospital', scopes: ['system/Patient.rs'], purposes: ['TREAT', 'ETREAT'] });
    const auditor = await registerTestClient(t, { role: 'auditor', scopes: ['system/*.rs'], purposes: ['HOPERAT'] });
    const narrowToken = await narrow.token();
    const glassToken = await narrow.token('system/Patient.rs', 'ETREAT');
    const auditorToken = await auditor.token();
    records.length = 0;
    await request(t.http).get('/fhir/Patient/x');
    await request(t.http).get('/fhir/Condition/x').set('Authorization', `Bearer ${narrowToken}`);
    await request(t.http).get('/fhir/Patient/x').set('Authorization', `Bearer ${auditorToken}`);
    await request(t.http).get('/fhir/Patient/x').set('Authorization', `Bearer ${glassToken}`);
    await request(t.http).get('/admin/clients').set('Authorization', `Bearer ${narrowToken}`);
    expect(records.map(summary)).toEqual([
      { client: 'anonymous', kind: 'authenticate', operation: undefined, type: undefined, outcome: 'failure', status: 401 },
      { client: narrow.clientId, kind: 'read', operation: undefined, type: 'Condition', outcome: 'failure', status: 403 },
      { client: auditor.clientId, kind: 'read', operation: undefined, type: 'Patient', outcome: 'failure', status: 403 },
      { client: narrow.clientId, kind: 'read', operation: undefined, type: 'Patient', outcome: 'failure', status: 403 },
      { client: narrow.clientId, kind: 'admin', operation: 'client-list', type: undefined, outcome: 'failure', status: 403 },
    ]);
    expect(records[4].principal.role).toBe('hospital');
  });

  it('records admin registrations with the client id and never the secret or resource content', async () => {
    const admin = await registerTestClient(t, { role: 'admin', scopes: ['system/Organization.cruds'], purposes: ['HSYSADMIN'] });
    const token = await admin.token();
    const org = await request(t.http)
      .put('/fhir/Organization/org-audit')
      .set('Authorization', `Bearer ${token}`)
      .set('Content-Type', 'application/fhir+json')
      .send({ resourceType: 'Organization', id: 'org-audit', name: 'Audit test hospital' });
    expect(org.status).toBeLessThan(300);
    // What each request's one access log line receives from the audit stage (docs/performance.md).
    const lines: unknown[] = [];
    const take = logAudit.takeRequestAuditFields;
    jest.spyOn(logAudit, 'takeRequestAuditFields').mockImplementation((id: unknown) => {
      const fields = take(id);
      if (fields) lines.push(fields.audit);
      return fields;
    });
    const made = await request(t.http)
      .post('/admin/clients')
      .set('Authorization', `Bearer ${token}`)
      .send({ clientId: `audited-${Date.now()}`, organization: 'org-audit', role: 'hospital', scopes: ['system/*.rs'], purposes: ['TREAT'] });
    expect(made.status).toBe(201);
    const created = await t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(hiePatient({ identifier: [{ system: 'urn:mrn', value: 'SECRET-MRN-77' }] }));
    expect(created.status).toBe(201);
    const registration = records.find((r) => r.subtype === 'client-register')!;
    expect(summary(registration)).toEqual({ client: admin.clientId, kind: 'admin', operation: 'client-register', type: undefined, outcome: 'success', status: 201 });
    expect(registration.entities).toEqual([{ reference: `client/${made.body.clientId}`, patients: [] }]);
    expect(JSON.stringify(records)).not.toContain(made.body.clientSecret);
    // The access lines carry ids, codes and counts, not the record's body.
    const logged = lines as { interaction: string; subtype?: string }[];
    expect(logged.map((l) => l.subtype ?? l.interaction)).toEqual(['client-register', 'create']);
    // The registration checks its Organization through the pipeline: two records, one line.
    expect(logged[0]).toMatchObject({ client: admin.clientId, interaction: 'admin', subtype: 'client-register', outcome: 'success', resources: 2, auditRecords: 2 });
    expect(logged[1]).toEqual({
      client: expect.stringMatching(/^test-hospital-/),
      interaction: 'create',
      action: 'C',
      organization: 'org-test',
      role: 'hospital',
      purposeOfUse: 'TREAT',
      resourceType: 'Patient',
      outcome: 'success',
      // The basis kinds only (never their descriptions): a write also names its deciding write policy.
      accessBasis: ['consent', 'write-policy'],
      patients: 1,
      resources: 1,
      auditRecords: 1,
    });
    const text = JSON.stringify(logged);
    expect(text).not.toContain(made.body.clientSecret);
    expect(text).not.toContain('SECRET-MRN-77');
    expect(text).not.toContain('Müller');
    expect(text).not.toContain('1980');
  });

  it('records a throttled request (429)', async () => {
    const c = await registerTestClient(t, { role: 'hospital' });
    const token = await c.token();
    let last: request.Response | undefined;
    for (let n = 0; n < 9 && last?.status !== 429; n++) {
      last = await request(t.http).get('/fhir/Patient/none').set('Authorization', `Bearer ${token}`);
    }
    expect(last!.status).toBe(429);
    expect(summary(records[records.length - 1])).toEqual({ client: c.clientId, kind: 'rate-limit', operation: undefined, type: undefined, outcome: 'failure', status: 429 });
  });
});
