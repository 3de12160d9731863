import { randomUUID } from 'node:crypto';
import request from 'supertest';
import type { AuditEvent, Bundle, OperationOutcome } from '@medplum/fhirtypes';
import type { AuditRecord } from '../../src/fhir/pipeline/audit-record';
import { toAuditEventRow } from '../../src/audit/audit-event.builder';
import { AuditTrailWriter } from '../../src/audit/audit-trail.writer';
import { registerTestClient } from '../support/auth';
import { createTestApp, TestApp } from '../support/test-app';

/** An auditor counts: `_summary=count`, `_total`, and what `_include` answers on the trail (docs/audit.md). */
describe('audit trail counts and includes', () => {
  let t: TestApp;
  let auditorToken: string;
  /** Seeded on a day of their own: every fifth one refused (outcome 4), each naming a Patient and an Observation. */
  const SEEDED = 1500;
  const REFUSED = SEEDED / 5;
  const DAY = '2021-04-01';
  const seedClient = `seed-${randomUUID().slice(0, 8)}`;

  beforeAll(async () => {
    t = await createTestApp();
    const auditor = await registerTestClient(t, { role: 'auditor', scopes: ['system/AuditEvent.rs'], purposes: ['HOPERAT'] });
    auditorToken = await auditor.token();
    const writer = t.app.get(AuditTrailWriter);
    const start = Date.parse(`${DAY}T00:00:00Z`);
    const rows = Array.from({ length: SEEDED }, (_, n) => {
      const refused = n % 5 === 0;
      const record: AuditRecord = {
        kind: 'read',
        action: 'R',
        recorded: new Date(start + n * 1000).toISOString(),
        principal: { kind: 'client', clientId: seedClient, organization: 'org-seed', role: 'hospital', scopes: [], purposeOfUse: 'TREAT' },
        resourceType: 'Observation',
        path: `/Observation/o${n}`,
        outcome: refused ? 'failure' : 'success',
        status: refused ? 403 : 200,
        failureCode: refused ? 'forbidden' : undefined,
        entities: [
          { reference: `Observation/o${n}`, versionId: '1', patients: [`p${n % 7}`] },
          { reference: `Patient/p${n % 7}`, patients: [`p${n % 7}`] },
        ],
        patients: [`p${n % 7}`],
        accessBasis: ['scope: system/*.rs'],
        purposeOfUse: 'TREAT',
        durationMs: 1,
      };
      return toAuditEventRow(record, 'seed:1');
    });
    await Promise.all(rows.map((r) => writer.append(r)));
  });
  afterAll(() => t.close());

  const get = (path: string, token = auditorToken) => request(t.http).get(path).set('Authorization', `Bearer ${token}`);
  const stored = async (where: string, params: unknown[]): Promise<number> =>
    ((await t.db.query(`SELECT count(*)::int AS n FROM audit_event WHERE recorded >= $1 AND recorded < $2 AND ${where}`, [`${DAY}T00:00:00Z`, '2021-04-02T00:00:00Z', ...params])) as { n: number }[])[0].n;

  it('_summary=count answers the number of matches and no entry', async () => {
    expect(await stored('true', [])).toBe(SEEDED);
    expect(await stored(`outcome = '4'`, [])).toBe(REFUSED);
    expect(await stored(`patients @> ARRAY[$3::text]`, ['p3'])).toBe(Math.ceil((SEEDED - 3) / 7));
    for (const [query, total] of [
      [`date=${DAY}`, SEEDED],
      [`date=${DAY}&outcome=4`, REFUSED],
      [`date=${DAY}&patient=Patient/p3`, Math.ceil((SEEDED - 3) / 7)],
      [`date=2021-04-02`, 0],
    ] as const) {
      const res = await get(`/fhir/AuditEvent?${query}&_summary=count`);
      expect({ query, status: res.status }).toEqual({ query, status: 200 });
      const bundle = res.body as Bundle;
      expect({ query, type: bundle.type, total: bundle.total, entry: bundle.entry }).toEqual({ query, type: 'searchset', total, entry: undefined });
      expect(bundle.link?.map((l) => l.relation)).toEqual(['self']);
    }
  });

  it('_total=accurate adds the count to every page; none (the default) leaves it out', async () => {
    const first = await get(`/fhir/AuditEvent?date=${DAY}&_total=accurate`);
    expect(first.status).toBe(200);
    expect(first.body.total).toBe(SEEDED);
    expect(first.body.entry).toHaveLength(20);
    const next = (first.body as Bundle).link!.find((l) => l.relation === 'next')!.url!;
    expect(new URL(next).searchParams.get('_total')).toBe('accurate');
    const second = await get(new URL(next).pathname + new URL(next).search);
    expect({ total: second.body.total, entries: second.body.entry.length }).toEqual({ total: SEEDED, entries: 20 });
    const none = await get(`/fhir/AuditEvent?date=${DAY}&_total=none`);
    expect(none.body.total).toBeUndefined();
    expect((await get(`/fhir/AuditEvent?date=${DAY}`)).body.total).toBeUndefined();
  });

  it('_count=0 answers the total alone (with _total=accurate) and never a next link', async () => {
    const counted = await get(`/fhir/AuditEvent?date=${DAY}&_count=0&_total=accurate`);
    expect(counted.status).toBe(200);
    const bundle = counted.body as Bundle;
    expect({ total: bundle.total, entry: bundle.entry ?? [], links: bundle.link?.map((l) => l.relation) }).toEqual({ total: SEEDED, entry: [], links: ['self'] });
    const bare = await get(`/fhir/AuditEvent?date=${DAY}&_count=0`);
    expect({ status: bare.status, total: bare.body.total, entry: bare.body.entry ?? [] }).toEqual({ status: 200, total: undefined, entry: [] });
  });

  it('_total=estimate is the planner’s estimate, within a factor of 3 after ANALYZE', async () => {
    await t.db.query('ANALYZE audit_event');
    const res = await get(`/fhir/AuditEvent?date=${DAY}&_total=estimate`);
    expect(res.status).toBe(200);
    expect(Number.isInteger(res.body.total)).toBe(true);
    expect(res.body.total).toBeGreaterThanOrEqual(SEEDED / 3);
    expect(res.body.total).toBeLessThanOrEqual(SEEDED * 3);
  });

  it('a scope-restricted auditor counts only what its scope lets it see', async () => {
    const refusalsOnly = await registerTestClient(t, { role: 'auditor', scopes: ['system/AuditEvent.rs?outcome=4'], purposes: ['HOPERAT'] });
    const token = await refusalsOnly.token();
    const counted = await get(`/fhir/AuditEvent?date=${DAY}&_summary=count`, token);
    expect({ status: counted.status, total: counted.body.total }).toEqual({ status: 200, total: REFUSED });
    const accurate = await get(`/fhir/AuditEvent?date=${DAY}&_total=accurate&_count=5`, token);
    expect({ total: accurate.body.total, outcomes: [...new Set(accurate.body.entry.map((e: { resource: AuditEvent }) => e.resource.outcome))] }).toEqual({
      total: REFUSED,
      outcomes: ['4'],
    });
  });

  it('_include=AuditEvent:patient / :entity returns the matches and says the named resources are withheld', async () => {
    const outcomeOf = (b: Bundle) => b.entry!.filter((e) => e.search?.mode === 'outcome').map((e) => e.resource as OperationOutcome);
    // Newest first: o1499 (p1), o1498 (p0), o1497 (p6).
    const byPatient = await get(`/fhir/AuditEvent?date=${DAY}&_count=3&_include=AuditEvent:patient`);
    expect(byPatient.status).toBe(200);
    const b1 = byPatient.body as Bundle;
    expect(b1.entry!.filter((e) => e.search?.mode === 'match')).toHaveLength(3);
    expect(b1.entry!.filter((e) => e.search?.mode === 'include')).toEqual([]);
    expect(outcomeOf(b1)).toEqual([
      {
        resourceType: 'OperationOutcome',
        issue: [
          {
            severity: 'warning',
            code: 'suppressed',
            diagnostics: expect.stringMatching(/^3 resource\(s\) \(Patient\) named by these AuditEvents are not included/),
            expression: ['_include'],
          },
        ],
      },
    ]);
    const byEntity = await get(`/fhir/AuditEvent?date=${DAY}&_count=3&_include=AuditEvent:entity`);
    expect(outcomeOf(byEntity.body as Bundle)[0].issue[0].diagnostics).toMatch(/^6 resource\(s\) \(Observation, Patient\) named/);
    const typed = await get(`/fhir/AuditEvent?date=${DAY}&_count=3&_include=AuditEvent:entity:Observation`);
    expect(outcomeOf(typed.body as Bundle)[0].issue[0].diagnostics).toMatch(/^3 resource\(s\) \(Observation\) named/);
    // No include asked: no outcome entry.
    expect(outcomeOf((await get(`/fhir/AuditEvent?date=${DAY}&_count=3`)).body as Bundle)).toEqual([]);
  });

  it('the CapabilityStatement advertises exactly the includes the trail answers, and no revinclude', async () => {
    const res = await request(t.http).get('/fhir/metadata');
    expect(res.status).toBe(200);
    const auditEvent = res.body.rest[0].resource.find((r: { type: string }) => r.type === 'AuditEvent');
    expect({ include: auditEvent.searchInclude, revinclude: auditEvent.searchRevInclude }).toEqual({ include: ['AuditEvent:entity', 'AuditEvent:patient'], revinclude: undefined });
    const patient = res.body.rest[0].resource.find((r: { type: string }) => r.type === 'Patient');
    expect(patient.searchInclude[0]).toBe('*');
  });

  it('refuses what it does not answer with a 400 naming the parameter, never ignoring it', async () => {
    for (const [query, expression, code] of [
      ['_summary=text', '_summary', 'not-supported'],
      ['_summary=true', '_summary', 'not-supported'],
      ['_total=maybe', '_total', 'invalid'],
      ['_include=AuditEvent:agent', '_include', 'not-supported'],
      ['_include=*', '_include', 'not-supported'],
      ['_include=Patient:organization', '_include', 'not-supported'],
      ['_revinclude=Provenance:target', '_revinclude', 'not-supported'],
    ] as const) {
      const res = await get(`/fhir/AuditEvent?date=${DAY}&${query}`);
      expect({ query, status: res.status, code: res.body.issue?.[0]?.code, expression: res.body.issue?.[0]?.expression }).toEqual({ query, status: 400, code, expression: [expression] });
    }
  });
});
