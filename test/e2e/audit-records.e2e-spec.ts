import type { AuditRecord } from '../../src/fhir/pipeline/audit-record';
import { captureAuditRecords } from '../support/audit';
import { FHIR_JSON, hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

/**
 * One typed audit model (access pipeline, second edition): every request that reaches the server
 * produces records of one shape — REST interactions, one per Bundle entry plus the Bundle, and
 * requests refused before the pipeline (406, 415, no route) — naming the patients touched.
 */
describe('audit records of every request', () => {
  let t: TestApp;
  let records: AuditRecord[] = [];

  beforeAll(async () => {
    t = await createTestApp();
    records = captureAuditRecords(t.app);
  });
  afterAll(() => t.close());
  beforeEach(() => {
    records.length = 0;
  });

  const summary = (r: AuditRecord) => [r.kind, r.subtype, r.action, r.outcome, r.status, r.failureCode, r.patients];

  it('refusals before the pipeline: 406, 415 and an unknown route each leave one record', async () => {
    expect((await t.api.get('/fhir/Patient').set('Accept', 'text/csv')).status).toBe(406);
    expect((await t.api.post('/fhir/Patient').type('form').send({ resourceType: 'Patient' })).status).toBe(415);
    expect((await t.api.get('/nowhere/at/all')).status).toBe(404);
    expect(records.map(summary)).toEqual([
      ['request', 'GET', 'E', 'failure', 406, 'not-supported', []],
      ['request', 'POST', 'E', 'failure', 415, 'not-supported', []],
      ['request', 'GET', 'E', 'failure', 404, 'not-found', []],
    ]);
    expect(records.map((r) => r.path)).toEqual(['/fhir/Patient', '/fhir/Patient', '/nowhere/at/all']);
  });

  it('a read, a failed write and a search name the patients whose data they touched', async () => {
    const p = (await t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(hiePatient())).body.id as string;
    await t.api.get(`/fhir/Patient/${p}`);
    await t.api.put(`/fhir/Patient/${p}`).set('Content-Type', FHIR_JSON).send(hiePatient({ id: p, gender: 'nope' }));
    await t.api.get(`/fhir/Patient?_id=${p}`);
    expect(records.map(summary)).toEqual([
      ['create', undefined, 'C', 'success', 201, undefined, [p]],
      ['read', undefined, 'R', 'success', 200, undefined, [p]],
      ['update', undefined, 'U', 'failure', 400, 'code-invalid', [p]],
      ['search-type', undefined, 'R', 'success', 200, undefined, [p]],
    ]);
    expect(records[1].entities).toEqual([{ reference: `Patient/${p}`, versionId: '1', patients: [p] }]);
  });

  it('a batch: one record per entry, then one for the Bundle', async () => {
    const batch = await t.api.post('/fhir').set('Content-Type', FHIR_JSON).send({
      resourceType: 'Bundle',
      type: 'batch',
      entry: [
        { resource: hiePatient(), request: { method: 'POST', url: 'Patient' } },
        { request: { method: 'GET', url: 'Patient/not-there' } },
      ],
    });
    expect(batch.status).toBe(200);
    const created = /Patient\/([^/]+)\//.exec(batch.body.entry[0].response.location)![1];
    const byEntry = records.filter((r) => r.bundleEntry !== undefined).sort((a, b) => a.bundleEntry! - b.bundleEntry!);
    expect(byEntry.map((r) => [r.bundleEntry, ...summary(r)])).toEqual([
      [0, 'create', undefined, 'C', 'success', 201, undefined, [created]],
      [1, 'read', undefined, 'R', 'failure', 404, 'not-found', []],
    ]);
    expect(records.filter((r) => r.bundleEntry === undefined).map(summary)).toEqual([['batch', undefined, 'E', 'success', 200, undefined, []]]);
  });
});
