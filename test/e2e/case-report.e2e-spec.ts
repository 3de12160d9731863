import type { Bundle, Composition, Task } from '@medplum/fhirtypes';
import type { AuditRecord } from '../../src/fhir/pipeline/audit-record';
import { CASE_REPORT_CONFIG, CaseReportConfig } from '../../src/public-health/case-report.config';
import { CaseReportJob } from '../../src/public-health/case-report.job';
import { CASE_REPORT_QUEUE } from '../../src/public-health/case-report.listener';
import { captureAuditRecords } from '../support/audit';
import { hospitalAgent, registerTestClient } from '../support/auth';
import { consentResource } from '../support/consent';
import { FHIR_JSON, hiePatient } from '../support/fixtures';
import { jobsSettled } from '../support/jobs';
import { createTestApp, TestApp } from '../support/test-app';
import { writeConflictOnce } from '../support/write-conflict';

/**
 * Issue 26, reportable-condition case reports (docs/public-health.md, Case reports): a Condition or
 * laboratory Observation with a code of fhir-profiles/valueset-reportable-conditions.json makes one
 * eICR-like document Bundle (custodian the agency) and one Task per patient × code × episode.
 */
const AGENCY = 'public-health-agency';
const COVID_SNOMED = { system: 'http://snomed.info/sct', code: '840539006', display: 'COVID-19' };
const COVID_PCR = { system: 'http://loinc.org', code: '94500-6' };
const PUBHLTH = { system: 'http://terminology.hl7.org/CodeSystem/v3-ActReason', code: 'PUBHLTH' };

/** Condition writes failed with a serialization failure after the report job was enqueued (the pipeline reruns the write). */
const conflict = writeConflictOnce(['Condition']);

describe('Case reports (issue 26)', () => {
  let t: TestApp;
  let hospitalA: Awaited<ReturnType<typeof hospitalAgent>>;
  let hospitalC: Awaited<ReturnType<typeof hospitalAgent>>;
  let agencyToken: string;
  let config: CaseReportConfig;
  const audit: AuditRecord[] = [];

  beforeAll(async () => {
    t = await createTestApp([conflict.module]);
    captureAuditRecords(t.app, audit);
    config = t.app.get<CaseReportConfig>(CASE_REPORT_CONFIG);
    hospitalA = await hospitalAgent(t, 'org-a');
    hospitalC = await hospitalAgent(t, 'org-c');
    const agency = await registerTestClient(t, { role: 'public-health', organization: AGENCY, scopes: ['system/*.rs'], purposes: ['PUBHLTH'], clinicalAccess: true });
    agencyToken = await agency.token();
    await hospitalA.put('/fhir/Organization/org-a').set('Content-Type', FHIR_JSON).send({ resourceType: 'Organization', id: 'org-a', name: 'Hospital A' }).expect(201);
  }, 120_000);

  afterAll(async () => {
    config.mandatedReportingOverridesOptOut = true;
    await t?.close();
  });

  const created = async (path: string, body: Record<string, unknown>): Promise<string> => {
    const res = await hospitalA.post(path).set('Content-Type', FHIR_JSON).send(body);
    expect(res.status).toBe(201);
    return res.body.id as string;
  };
  const patient = (mrn: string) => created('/fhir/Patient', hiePatient({ identifier: [{ system: 'http://hospital-a.example.org/mrn', value: mrn }] }));
  const condition = (patientId: string, onset: string, extra: Record<string, unknown> = {}) => ({
    resourceType: 'Condition',
    subject: { reference: `Patient/${patientId}` },
    code: { coding: [COVID_SNOMED] },
    onsetDateTime: onset,
    ...extra,
  });
  const lab = (patientId: string, effective: string) => ({
    resourceType: 'Observation',
    status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'laboratory' }] }],
    code: { coding: [COVID_PCR] },
    subject: { reference: `Patient/${patientId}` },
    effectiveDateTime: effective,
    valueCodeableConcept: { coding: [{ system: 'http://snomed.info/sct', code: '260373001', display: 'Detected' }] },
  });
  const settled = () => jobsSettled(t.db, CASE_REPORT_QUEUE);
  const reportsOf = async (patientId: string, code = COVID_SNOMED.code): Promise<{ id: string; task_id: string; reporting_org: string; trigger_ref: string }[]> =>
    t.db.query(`SELECT id, task_id, reporting_org, trigger_ref FROM case_report WHERE patient_id = $1 AND code = $2 ORDER BY created_at`, [patientId, code]);
  const asAgency = (path: string) => t.api.get(path).set('Authorization', `Bearer ${agencyToken}`);

  it('a reportable Condition produces exactly one report: the document Bundle (custodian the agency) and its Task', async () => {
    const p = await patient('CR-1');
    const encounter = await created('/fhir/Encounter', { resourceType: 'Encounter', status: 'finished', class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' }, subject: { reference: `Patient/${p}` } });
    const c = await created('/fhir/Condition', condition(p, '2026-03-01T10:00:00Z', { encounter: { reference: `Encounter/${encounter}` } }));
    await settled();

    const reports = await reportsOf(p);
    expect(reports).toHaveLength(1);
    expect(reports[0]).toMatchObject({ reporting_org: 'org-a', trigger_ref: `Condition/${c}` });
    const [stored] = await t.db.query(`SELECT custodian_org, author_org FROM resource WHERE resource_type = 'Bundle' AND id = $1`, [reports[0].id]);
    expect(stored).toEqual({ custodian_org: AGENCY, author_org: AGENCY });

    const res = await asAgency(`/fhir/Bundle/${reports[0].id}`);
    expect(res.status).toBe(200);
    const bundle = res.body as Bundle;
    expect(bundle.type).toBe('document');
    expect(bundle.entry!.map((e) => `${e.resource!.resourceType}/${e.resource!.id}`)).toEqual([
      `Composition/${bundle.entry![0].resource!.id}`,
      `Patient/${p}`,
      `Condition/${c}`,
      `Encounter/${encounter}`,
      'Organization/org-a',
    ]);
    const composition = bundle.entry![0].resource as Composition;
    expect(composition.type.coding).toEqual([{ system: 'http://loinc.org', code: '55751-2', display: 'Public health Case report' }]);
    expect(composition.subject).toEqual({ reference: `Patient/${p}` });
    expect(composition.encounter).toEqual({ reference: `Encounter/${encounter}` });
    expect(composition.author).toEqual([{ reference: 'Organization/org-a' }]);
    expect(composition.custodian).toEqual({ reference: `Organization/${AGENCY}` });
    expect(composition.event?.[0].code?.[0].coding).toEqual([COVID_SNOMED]);

    const tasks = await asAgency(`/fhir/Task?focus=Bundle/${reports[0].id}`);
    expect(tasks.status).toBe(200);
    expect(tasks.body.entry).toHaveLength(1);
    const task = tasks.body.entry[0].resource as Task;
    expect(task).toMatchObject({ id: reports[0].task_id, status: 'requested', owner: { reference: `Organization/${AGENCY}` }, for: { reference: `Patient/${p}` } });

    // The basis is audited with the report, in its transaction.
    const record = audit.find((r) => r.subtype === 'case-report' && r.entities.some((e) => e.reference === `Condition/${c}`));
    expect(record?.accessBasis).toEqual(['case-report: mandated reporting of a reportable condition; overrides opt-out (mandatedReportingOverridesOptOut=true)']);
    expect(record?.entities.map((e) => e.reference)).toEqual([`Condition/${c}`, `Bundle/${reports[0].id}`, `Task/${reports[0].task_id}`]);
    expect(record?.patients).toEqual([p]);
  });

  it('the report Bundle is readable by the reporting organization, not by a third hospital; its Task by the agency only', async () => {
    const p = await patient('CR-2');
    await created('/fhir/Condition', condition(p, '2026-03-02T10:00:00Z'));
    await settled();
    const [report] = await reportsOf(p);
    expect((await hospitalA.get(`/fhir/Bundle/${report.id}`)).status).toBe(200);
    const third = await hospitalC.get(`/fhir/Bundle/${report.id}`);
    expect(third.status).toBe(404);
    // The Task names the patient (Patient compartment) but is labelled restricted: the agency's only.
    expect((await hospitalC.get(`/fhir/Task/${report.task_id}`)).status).toBe(404);
    expect((await hospitalC.get(`/fhir/Task?patient=${p}`)).body.entry ?? []).toEqual([]);
    expect((await asAgency(`/fhir/Task/${report.task_id}`)).status).toBe(200);
    const search = await hospitalC.get(`/fhir/Bundle?_id=${report.id}`);
    expect(search.status).toBe(200);
    expect(search.body.total ?? search.body.entry?.length ?? 0).toBe(0);
  });

  it('the agency works its report Tasks (accept, complete, with If-Match) and may subscribe; without clinical access it reads its own Tasks only', async () => {
    const p = await patient('CR-W');
    await created('/fhir/Condition', condition(p, '2026-03-04T10:00:00Z'));
    await settled();
    const [report] = await reportsOf(p);
    const worker = await registerTestClient(t, { role: 'public-health', organization: AGENCY, scopes: ['system/Task.rus', 'system/Subscription.cruds'], purposes: ['PUBHLTH'] });
    const token = await worker.token();
    const as = (m: 'get' | 'put' | 'post', path: string) => t.api[m](path).set('Authorization', `Bearer ${token}`).set('Content-Type', FHIR_JSON);
    const read = await as('get', `/fhir/Task/${report.task_id}`);
    expect(read.status).toBe(200);
    for (const status of ['accepted', 'completed']) {
      const current = await as('get', `/fhir/Task/${report.task_id}`);
      const res = await as('put', `/fhir/Task/${report.task_id}`).set('If-Match', current.headers.etag as string).send({ ...current.body, status });
      expect([res.status, res.body.status]).toEqual([200, status]);
    }
    // Its worklist: its own Tasks only; a hospital's Task about the same patient stays out and unread.
    const hospitalTask = await created('/fhir/Task', { resourceType: 'Task', status: 'requested', intent: 'order', for: { reference: `Patient/${p}` } });
    const list = await as('get', `/fhir/Task?patient=${p}`);
    expect(list.status).toBe(200);
    expect((list.body.entry ?? []).map((e: { resource: { id: string } }) => e.resource.id)).toEqual([report.task_id]);
    expect((await as('get', `/fhir/Task/${hospitalTask}`)).status).toBe(404);
    const foreign = await as('get', `/fhir/Task/${hospitalTask}`);
    expect(foreign.body.issue?.[0]?.code).toBe('not-found');
    // It may subscribe to its worklist (rest-hook; loopback endpoints are allowed in test only).
    const sub = await as('post', '/fhir/Subscription').send({ resourceType: 'Subscription', status: 'requested', reason: 'case reports', criteria: `Task?owner=Organization/${AGENCY}`, channel: { type: 'rest-hook', endpoint: 'http://127.0.0.1:9/hook' } });
    expect([sub.status, sub.body.status]).toEqual([201, 'active']);
    // Nor may it change a hospital's Task, or read patient data without clinical access.
    expect((await as('put', `/fhir/Task/${hospitalTask}`).send({ resourceType: 'Task', id: hospitalTask, status: 'cancelled', intent: 'order' })).status).toBe(403);
    expect((await as('get', `/fhir/Patient/${p}`)).status).toBe(403);
  });

  it('an update, a repeated lab result and a redelivered job produce no second report; a new episode after the gap does', async () => {
    const p = await patient('CR-3');
    const c = await created('/fhir/Condition', condition(p, '2026-03-01T10:00:00Z'));
    await settled();
    expect(await reportsOf(p)).toHaveLength(1);

    // An update of the reported Condition.
    const upd = await hospitalA.put(`/fhir/Condition/${c}`).set('Content-Type', FHIR_JSON).send({ ...condition(p, '2026-03-01T10:00:00Z'), id: c, clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-clinical', code: 'active' }] } });
    expect(upd.status).toBe(200);
    // A lab result (its own code: one report), then the same result again a week later (none).
    await created('/fhir/Observation', lab(p, '2026-03-01T08:00:00Z'));
    await settled();
    await created('/fhir/Observation', lab(p, '2026-03-08T08:00:00Z'));
    // Within the gap of the reported episode (60 days on): the same episode.
    await created('/fhir/Condition', condition(p, '2026-04-30T10:00:00Z'));
    await settled();
    expect(await reportsOf(p)).toHaveLength(1);
    expect(await reportsOf(p, COVID_PCR.code)).toHaveLength(1);

    // At-least-once delivery: the job run again for the first Condition finds its episode.
    await t.app.get(CaseReportJob).run({ id: 'redelivered', queue: CASE_REPORT_QUEUE, data: { resourceType: 'Condition', id: c, patientId: p }, retryCount: 1 });
    expect(await reportsOf(p)).toHaveLength(1);

    // More than 90 days after the episode's last qualifying Condition (2026-04-30): a new episode.
    await created('/fhir/Condition', condition(p, '2026-08-01T10:00:00Z'));
    await settled();
    expect(await reportsOf(p)).toHaveLength(2);
  });

  it('a write transaction the pipeline reruns after a serialization failure produces one report', async () => {
    const p = await patient('CR-4');
    conflict.control.armed = 1;
    conflict.control.fired = 0;
    const c = await created('/fhir/Condition', condition(p, '2026-03-01T10:00:00Z'));
    expect(conflict.control.fired).toBe(1);
    await settled();
    const [{ n }] = await t.db.query(`SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1 AND data->>'id' = $2`, [CASE_REPORT_QUEUE, c]);
    expect(n).toBe(1);
    expect(await reportsOf(p)).toHaveLength(1);
  });

  it('opt-out: mandated reporting overrides a deny by default; with the switch off the patient is not reported, and both are audited', async () => {
    const denied = async (mrn: string) => {
      const p = await patient(mrn);
      await created('/fhir/Consent', consentResource(p, { type: 'deny' }));
      return p;
    };
    const p1 = await denied('CR-5');
    await created('/fhir/Condition', condition(p1, '2026-03-01T10:00:00Z'));
    await settled();
    expect(await reportsOf(p1)).toHaveLength(1);

    config.mandatedReportingOverridesOptOut = false;
    try {
      const p2 = await denied('CR-6');
      const c2 = await created('/fhir/Condition', condition(p2, '2026-03-01T10:00:00Z'));
      // A patient whose Consent permits public-health use is still reported.
      const p3 = await patient('CR-7');
      await created('/fhir/Consent', consentResource(p3, { type: 'permit', purpose: [PUBHLTH] }));
      const c3 = await created('/fhir/Condition', condition(p3, '2026-03-01T10:00:00Z'));
      await settled();
      expect(await reportsOf(p2)).toHaveLength(0);
      expect(await reportsOf(p3)).toHaveLength(1);
      const withheld = audit.find((r) => r.subtype === 'case-report-withheld' && r.entities.some((e) => e.reference === `Condition/${c2}`));
      expect(withheld?.patients).toEqual([p2]);
      expect(withheld?.accessBasis[0]).toMatch(/^case-report: not sent: Condition\/.+ is not in the PUBHLTH consent view .*mandatedReportingOverridesOptOut=false\)$/);
      const reported = audit.find((r) => r.subtype === 'case-report' && r.entities.some((e) => e.reference === `Condition/${c3}`));
      expect(reported?.accessBasis).toEqual(['case-report: mandated reporting of a reportable condition; patient data read in the PUBHLTH consent view (mandatedReportingOverridesOptOut=false)']);
    } finally {
      config.mandatedReportingOverridesOptOut = true;
    }
  });
});
