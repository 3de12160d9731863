import { auditRecord } from '../../src/fhir/pipeline/audit-record';
import { AuditEventRow, toAuditEventRow } from '../../src/audit/audit-event.builder';
import { AuditTrailRepository } from '../../src/audit/audit-trail.repository';
import { AuditTrailWriter } from '../../src/audit/audit-trail.writer';
import { ANONYMOUS } from '../../src/fhir/pipeline/principal';
import { FHIR_JSON, hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

/**
 * Issue 23: the group commit of records without a write transaction. A lone read used to wait for
 * the writer's gathering timer (AUDIT_GROUP_COMMIT_WAIT_MS) before its append even started; now an
 * idle writer starts at once and the records arriving while it commits form the next batch.
 * AUDIT_READ_COMMIT=relaxed lets successful reads' batches commit without waiting for the flush.
 */
function tokenRecord(): AuditEventRow {
  return toAuditEventRow(auditRecord({ kind: 'token', principal: ANONYMOUS, outcome: 'failure', status: 401, failureCode: 'login', durationMs: 0 }), 'test-node');
}

/** Lets a batch that just resolved its callers finish (the writer is idle afterwards). */
async function idle(writer: AuditTrailWriter): Promise<void> {
  await writer.chainPending();
  await new Promise((resolve) => setImmediate(resolve));
}

describe('audit group commit (default: durable)', () => {
  let t: TestApp;
  let writer: AuditTrailWriter;
  let repository: AuditTrailRepository;
  beforeAll(async () => {
    t = await createTestApp();
    writer = t.app.get(AuditTrailWriter);
    repository = t.app.get(AuditTrailRepository);
  });
  afterAll(() => t.close());
  afterEach(() => jest.restoreAllMocks());

  it('an idle writer starts the append at once; records arriving meanwhile form the next batch, chained in order', async () => {
    await idle(writer);
    const append = jest.spyOn(repository, 'appendAlone');
    const rows = [tokenRecord(), tokenRecord(), tokenRecord(), tokenRecord()];
    const first = writer.append(rows[0]);
    // No gathering timer: the statement went out before this line (it waited ≥ 1 ms before).
    expect(append).toHaveBeenCalledTimes(1);
    const rest = rows.slice(1).map((row) => writer.append(row));
    await Promise.all([first, ...rest]);
    expect(append.mock.calls.map(([batch, relaxed]) => [batch.map((r) => r.id), relaxed])).toEqual([
      [[rows[0].id], false],
      [rows.slice(1).map((r) => r.id), false],
    ]);
    const stored: { id: string }[] = await t.db.query(`SELECT id::text AS id FROM audit_event WHERE id = ANY($1::uuid[]) ORDER BY seq`, [rows.map((r) => r.id)]);
    expect(stored.map((r) => r.id)).toEqual(rows.map((r) => r.id));
  });

  it('appendMany queues its rows together: an idle writer appends them in one statement, chained in order (append row by row starts a batch with the first alone)', async () => {
    await idle(writer);
    const append = jest.spyOn(repository, 'appendAlone');
    const rows = [tokenRecord(), tokenRecord(), tokenRecord(), tokenRecord()];
    await writer.appendMany(rows);
    expect(append.mock.calls.map(([batch, relaxed]) => [batch.map((r) => r.id), relaxed])).toEqual([[rows.map((r) => r.id), false]]);
    const stored: { id: string }[] = await t.db.query(`SELECT id::text AS id FROM audit_event WHERE id = ANY($1::uuid[]) ORDER BY seq`, [rows.map((r) => r.id)]);
    expect(stored.map((r) => r.id)).toEqual(rows.map((r) => r.id));
    await writer.appendMany([]);
    expect(append).toHaveBeenCalledTimes(1);
  });

  it('a read by id appends its record alone, durably, and the record is stored when the body arrives', async () => {
    const patient = await t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(hiePatient());
    expect(patient.status).toBe(201);
    await idle(writer);
    const append = jest.spyOn(repository, 'appendAlone');
    const read = await t.api.get(`/fhir/Patient/${patient.body.id}`);
    expect(read.status).toBe(200);
    // (Ignoring a 5 s sweep that may have run meanwhile: a batch without records.)
    const batches = append.mock.calls.filter(([rows]) => rows.length);
    expect(batches.map(([rows, relaxed]) => [rows.map((r) => [r.action, r.outcome, r.entities]), relaxed])).toEqual([
      [[['R', '0', [`Patient/${patient.body.id}`]]], false],
    ]);
    const [{ n }] = await t.db.query(`SELECT count(*)::int AS n FROM audit_event WHERE action = 'R' AND $1 = ANY(entities)`, [`Patient/${patient.body.id}`]);
    expect(n).toBe(1);
  });

  it('a create’s record commits durably with the write; chaining it afterwards (no new record) does not wait for a flush', async () => {
    await idle(writer);
    const pendingInsert = jest.spyOn(repository, 'pendingInsert');
    const append = jest.spyOn(repository, 'appendAlone');
    const created = await t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(hiePatient());
    expect(created.status).toBe(201);
    expect(pendingInsert.mock.calls.map(([rows]) => rows.map((r) => `${r.action}${r.outcome}`))).toEqual([['C0']]);
    // The chaining batch (and a sweep's, if one ran meanwhile): no records of its own, relaxed.
    expect(append.mock.calls.length).toBeGreaterThanOrEqual(1);
    expect(new Set(append.mock.calls.map(([rows, relaxed]) => `${rows.length} ${relaxed}`))).toEqual(new Set(['0 true']));
    // Chained (not left in audit_pending) by the time the response arrived.
    const [{ n }] = await t.db.query(`SELECT count(*)::int AS n FROM audit_event WHERE action = 'C' AND $1 = ANY(entities)`, [`Patient/${created.body.id}`]);
    expect(n).toBe(1);
    const [{ pending }] = await t.db.query(`SELECT count(*)::int AS pending FROM audit_pending WHERE entities LIKE $1`, [`%Patient/${created.body.id}%`]);
    expect(pending).toBe(0);
  });
});

describe('audit group commit with AUDIT_READ_COMMIT=relaxed', () => {
  let t: TestApp;
  let writer: AuditTrailWriter;
  let repository: AuditTrailRepository;
  const saved = process.env.AUDIT_READ_COMMIT;
  beforeAll(async () => {
    process.env.AUDIT_READ_COMMIT = 'relaxed';
    t = await createTestApp();
    writer = t.app.get(AuditTrailWriter);
    repository = t.app.get(AuditTrailRepository);
  });
  afterAll(async () => {
    if (saved === undefined) delete process.env.AUDIT_READ_COMMIT;
    else process.env.AUDIT_READ_COMMIT = saved;
    await t.close();
  });
  afterEach(() => jest.restoreAllMocks());

  it('commits a successful read’s batch relaxed, a refused read’s and a security event’s durably, and stores all three', async () => {
    const patient = await t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(hiePatient());
    expect(patient.status).toBe(201);
    await idle(writer);
    const append = jest.spyOn(repository, 'appendAlone');
    expect((await t.api.get(`/fhir/Patient/${patient.body.id}`)).status).toBe(200);
    await idle(writer);
    expect((await t.api.get('/fhir/Patient/no-such-patient-23')).status).toBe(404);
    await idle(writer);
    const token = tokenRecord();
    await writer.append(token);
    // (The waits for an idle writer in between chain pending write records: batches without rows.)
    const batches = append.mock.calls.filter(([batch]) => batch.length);
    expect(batches.map(([batch, relaxed]) => [batch.map((r) => `${r.action}${r.outcome}`), relaxed])).toEqual([
      [['R0'], true],
      [['R4'], false],
      [['E4'], false],
    ]);
    const stored: { action: string; outcome: string }[] = await t.db.query(`SELECT action, outcome FROM audit_event WHERE id = ANY($1::uuid[]) ORDER BY seq`, [
      batches.flatMap(([batch]) => batch.map((r) => r.id)),
    ]);
    expect(stored).toEqual([
      { action: 'R', outcome: '0' },
      { action: 'R', outcome: '4' },
      { action: 'E', outcome: '4' },
    ]);
  });

  it('a batch mixing a relaxed and a durable record commits durably', async () => {
    const read = { ...tokenRecord(), action: 'R', outcome: '0' };
    await idle(writer);
    const append = jest.spyOn(repository, 'appendAlone');
    // The first record starts a batch at once; the next two wait for it and share one.
    const first = writer.append(read);
    await Promise.all([first, writer.append({ ...read, id: tokenRecord().id }), writer.append(tokenRecord())]);
    expect(append.mock.calls.map(([batch, relaxed]) => [batch.length, relaxed])).toEqual([
      [1, true],
      [2, false],
    ]);
  });
});
