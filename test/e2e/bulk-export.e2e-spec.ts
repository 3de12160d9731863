import { consentResource } from '../support/consent';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import type { Bundle, Resource } from '@medplum/fhirtypes';
import { APP_CONFIG, AppConfig } from '../../src/config/app.config';
import { BulkExportJob } from '../../src/public-health/bulk-export.job';
import { SyntheticDataGenerator } from '../../src/synthetic/synthetic-data.generator';
import type { AuditRecord } from '../../src/fhir/pipeline/audit-record';
import { captureAuditRecords } from '../support/audit';
import { registerTestClient, TestClient } from '../support/auth';
import { FHIR_JSON } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

// Workers poll often so a test waits for its export for a second, not the default two.
process.env.JOBS_POLL_SECONDS = '0.5';
const EXPORT_DIR = mkdtempSync(join(tmpdir(), 'bulk-export-'));
process.env.EXPORT_DIR = EXPORT_DIR;
// Small pages, so every export in the test spans several pages of the keyset walk.
process.env.EXPORT_PAGE_SIZE = '10';

const RUN = Date.now().toString(36);
const HOSPITAL_A = `bx-a-${RUN}`;
const HOSPITAL_B = `bx-b-${RUN}`;
const ACT = 'http://terminology.hl7.org/CodeSystem/v3-ActCode';
const TYPES = ['Patient', 'Observation', 'Condition', 'Encounter', 'Immunization'];
const KICK_OFF = { Prefer: 'respond-async', Accept: 'application/fhir+json' };

interface Manifest {
  transactionTime: string;
  request: string;
  requiresAccessToken: boolean;
  output: { type: string; url: string; count: number }[];
  error: unknown[];
}

/**
 * Bulk Data `$export` (issue 26): kick-off, the job on the outbox, status polling, manifest, file
 * download and cancel, under the requester's own access. Hospital A holds generated data; two of
 * its patients deny all sharing in a Consent, so hospital B (opt-out, TREAT) sees the rest: the
 * exported line counts per type must equal what B counts by search.
 */
describe('Bulk Data $export', () => {
  let t: TestApp;
  const gen = new SyntheticDataGenerator({ seed: 26, patients: 8, idPrefix: `bx${RUN}` });
  const resources: Resource[] = [...gen.resources()];
  const denied = [gen.patientId(0), gen.patientId(1)];
  let tokenA: string;
  let tokenB: string;
  let clientB: TestClient;
  let records: AuditRecord[];
  let tokenC: string;

  beforeAll(async () => {
    t = await createTestApp();
    tokenA = await (await registerTestClient(t, { role: 'hospital', organization: HOSPITAL_A, scopes: ['system/*.cruds'] })).token();
    clientB = await registerTestClient(t, { role: 'hospital', organization: HOSPITAL_B, scopes: ['system/*.cruds'] });
    tokenB = await clientB.token();
    tokenC = await (await registerTestClient(t, { role: 'hospital', organization: `bx-c-${RUN}`, scopes: ['system/*.cruds'] })).token();
    for (const bundle of gen.transactionBundles()) {
      const res = await request(t.http).post('/fhir').set('Authorization', `Bearer ${tokenA}`).set('Content-Type', FHIR_JSON).send(bundle);
      if (res.status !== 200) throw new Error(`load: ${res.status} ${JSON.stringify(res.body).slice(0, 500)}`);
    }
    for (const patient of denied) {
      const res = await request(t.http)
        .post('/fhir/Consent')
        .set('Authorization', `Bearer ${tokenA}`)
        .set('Content-Type', FHIR_JSON)
        .send(consentResource(patient));
      expect(res.status).toBe(201);
    }
    records = captureAuditRecords(t.app);
  }, 120_000);
  afterAll(async () => {
    await t.close();
    rmSync(EXPORT_DIR, { recursive: true, force: true });
  });

  const get = (path: string, token: string) => request(t.http).get(path).set('Authorization', `Bearer ${token}`);

  async function kickOff(path: string, token = tokenB): Promise<string> {
    const res = await get(path, token).set(KICK_OFF);
    expect({ status: res.status, body: res.body }).toMatchObject({ status: 202, body: { resourceType: 'OperationOutcome' } });
    const location = res.headers['content-location'] as string;
    expect(location).toMatch(/^http:\/\/localhost:\d+\/bulk-export\/[0-9a-f-]{36}$/);
    return new URL(location).pathname;
  }

  async function manifestOf(status: string, token = tokenB): Promise<Manifest> {
    const started = Date.now();
    for (;;) {
      const res = await get(status, token);
      if (res.status === 200) {
        expect(res.headers['content-type']).toMatch(/^application\/json/);
        return res.body as Manifest;
      }
      expect({ status: res.status, body: res.body }).toMatchObject({ status: 202 });
      expect(res.headers['retry-after']).toBe('5');
      expect(res.headers['x-progress']).toEqual(expect.any(String));
      if (Date.now() - started > 60_000) throw new Error(`export ${status} did not finish: ${res.headers['x-progress']}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  async function linesOf(url: string, token = tokenB): Promise<Resource[]> {
    const res = await get(new URL(url).pathname, token).buffer(true).parse((r, cb) => {
      let text = '';
      r.on('data', (c: Buffer) => (text += c.toString('utf8')));
      r.on('end', () => cb(null, text));
    });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/fhir\+ndjson/);
    const text = res.body as string;
    expect(text.endsWith('\n')).toBe(true);
    return text.trimEnd().split('\n').map((line) => JSON.parse(line) as Resource);
  }

  async function searchTotal(query: string, token = tokenB): Promise<number> {
    const res = await get(`/fhir/${query}${query.includes('?') ? '&' : '?'}_summary=count`, token);
    expect(res.status).toBe(200);
    return (res.body as Bundle).total!;
  }

  it('system level: one file per type whose line count equals the same client’s search count, consent-filtered', async () => {
    const from = records.length;
    const status = await kickOff(`/fhir/$export?_type=${TYPES.join(',')}`);
    const manifest = await manifestOf(status);
    // The kick-off is audited as the operation; the job's access as the client's, once per type, on its behalf.
    const ours = records.slice(from).filter((r) => r.principal.clientId === clientB.clientId);
    expect(ours.filter((r) => r.kind === 'operation' && r.subtype === 'export').map((r) => [r.action, r.status])).toEqual([['R', 202]]);
    const onBehalf = ours.filter((r) => r.kind === 'system-access');
    expect(onBehalf.map((r) => r.subtype)).toEqual(TYPES.map(() => 'on-behalf-of:bulk-export'));
    expect(onBehalf[0].accessBasis).toEqual([expect.stringMatching(/^consent: policy opt-out \(TREAT shared unless denied\)/)]);
    expect(manifest).toMatchObject({ requiresAccessToken: true, error: [], request: expect.stringMatching(/\/fhir\/\$export\?_type=Patient%2CObservation/) });
    expect(new Date(manifest.transactionTime).toISOString()).toBe(manifest.transactionTime);
    expect(manifest.output.map((o) => o.type)).toEqual(TYPES);
    for (const { type, url, count } of manifest.output) {
      const lines = await linesOf(url);
      const total = await searchTotal(type);
      expect({ type, count, lines: lines.length, search: total }).toEqual({ type, count: total, lines: total, search: total });
      expect(new Set(lines.map((r) => r.id)).size).toBe(lines.length);
      expect(lines.every((r) => r.resourceType === type)).toBe(true);
    }
    // Consent shows: the denied patients and their data are not in B's export, though they exist.
    const patients = (await linesOf(manifest.output[0].url)).map((r) => r.id);
    expect(patients.sort()).toEqual([2, 3, 4, 5, 6, 7].map((n) => gen.patientId(n)).sort());
    const observations = resources.filter((r) => r.resourceType === 'Observation');
    expect(manifest.output[1].count).toBeLessThan(observations.length);
    expect(manifest.output[1].count).toBeGreaterThan(0);
  }, 90_000);

  it('_since exports only what changed at or after it; _typeFilter only what matches its search', async () => {
    await new Promise((r) => setTimeout(r, 20));
    const since = new Date().toISOString();
    const patient = gen.patientId(2);
    for (const value of [61, 62]) {
      const res = await request(t.http)
        .post('/fhir/Observation')
        .set('Authorization', `Bearer ${tokenA}`)
        .set('Content-Type', FHIR_JSON)
        .send({ resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] }, subject: { reference: `Patient/${patient}` }, valueQuantity: { value, unit: '/min' } });
      expect(res.status).toBe(201);
    }
    const sinceManifest = await manifestOf(await kickOff(`/fhir/$export?_type=Observation,Patient&_since=${encodeURIComponent(since)}`));
    // Nothing else changed since: only the two new Observations; no Patient file (no Patient changed).
    expect(sinceManifest.output.map((o) => [o.type, o.count])).toEqual([['Observation', 2]]);
    expect((await linesOf(sinceManifest.output[0].url)).map((r) => (r as { valueQuantity?: { value?: number } }).valueQuantity?.value).sort()).toEqual([61, 62]);

    const filter = encodeURIComponent('Observation?code=http://loinc.org|8867-4');
    const filtered = await manifestOf(await kickOff(`/fhir/$export?_type=Observation&_typeFilter=${filter}`));
    const expected = await searchTotal('Observation?code=http://loinc.org|8867-4');
    expect(expected).toBeGreaterThan(2);
    expect(expected).toBeLessThan(await searchTotal('Observation'));
    expect(filtered.output).toEqual([{ type: 'Observation', url: expect.any(String), count: expected }]);
    const lines = await linesOf(filtered.output[0].url);
    expect(lines.every((o) => JSON.stringify((o as { code?: unknown }).code).includes('"8867-4"'))).toBe(true);
  }, 90_000);

  it('Patient and Group level export the compartment types of the patients the client may see', async () => {
    const patientLevel = await manifestOf(await kickOff('/fhir/Patient/$export?_type=Patient,Condition'));
    expect(patientLevel.output.map((o) => [o.type, o.count])).toEqual([
      ['Patient', 6],
      ['Condition', await searchTotal('Condition')],
    ]);
    // B's Group of three of A's patients, one of whom denies sharing.
    const members = [gen.patientId(0), gen.patientId(2), gen.patientId(3)];
    const group = await request(t.http)
      .post('/fhir/Group')
      .set('Authorization', `Bearer ${tokenB}`)
      .set('Content-Type', FHIR_JSON)
      .send({ resourceType: 'Group', type: 'person', actual: true, member: members.map((m) => ({ entity: { reference: `Patient/${m}` } })) });
    expect(group.status).toBe(201);
    const manifest = await manifestOf(await kickOff(`/fhir/Group/${group.body.id}/$export?_type=Patient,Observation`));
    const observations = (await searchTotal(`Patient/${members[1]}/Observation`)) + (await searchTotal(`Patient/${members[2]}/Observation`));
    expect(manifest.output.map((o) => [o.type, o.count])).toEqual([
      ['Patient', 2],
      ['Observation', observations],
    ]);
    expect((await linesOf(manifest.output[0].url)).map((r) => r.id).sort()).toEqual([members[1], members[2]].sort());
    // A Group B may not see is one that does not exist.
    const hidden = await get(`/fhir/Group/${group.body.id}/$export`, tokenC).set(KICK_OFF);
    expect(hidden.status).toBe(404);
  }, 90_000);

  it('another client can neither read the status nor download nor cancel; the owner can, and the download is audited', async () => {
    const status = await kickOff('/fhir/$export?_type=Patient');
    const manifest = await manifestOf(status);
    const file = new URL(manifest.output[0].url).pathname;
    for (const res of [await get(status, tokenC), await get(file, tokenC), await request(t.http).delete(status).set('Authorization', `Bearer ${tokenC}`)]) {
      expect({ status: res.status, code: res.body.issue?.[0]?.code }).toEqual({ status: 404, code: 'not-found' });
    }
    expect((await get(file, tokenA)).status).toBe(404);
    const from = records.length;
    expect((await linesOf(manifest.output[0].url)).length).toBe(6);
    expect(records.slice(from)).toEqual([expect.objectContaining({ kind: 'operation', subtype: 'bulk-export-download', action: 'R', status: 200, outcome: 'success', path: file })]);
    expect(records[from].principal.organization).toBe(HOSPITAL_B);
  }, 90_000);

  it('DELETE on the status URL cancels the export and removes its files', async () => {
    const status = await kickOff(`/fhir/$export?_type=${TYPES.join(',')}`);
    const manifest = await manifestOf(status);
    const id = status.split('/').pop()!;
    expect(existsSync(join(EXPORT_DIR, id, 'Patient.ndjson'))).toBe(true);
    const cancelled = await request(t.http).delete(status).set('Authorization', `Bearer ${tokenB}`);
    expect({ status: cancelled.status, code: cancelled.body.issue?.[0]?.code }).toEqual({ status: 202, code: 'informational' });
    expect(existsSync(join(EXPORT_DIR, id))).toBe(false);
    expect((await get(status, tokenB)).status).toBe(404);
    expect((await get(new URL(manifest.output[0].url).pathname, tokenB)).status).toBe(404);
    expect((await request(t.http).delete(status).set('Authorization', `Bearer ${tokenB}`)).status).toBe(404);

    // Cancelled while it runs: the job stops and leaves nothing behind.
    const running = await kickOff(`/fhir/$export?_type=${TYPES.join(',')}`);
    const cancel = await request(t.http).delete(running).set('Authorization', `Bearer ${tokenB}`);
    expect(cancel.status).toBe(202);
    // Once its job has ended (whether it had started or not), nothing of the export is on disk.
    const runningId = running.split('/').pop()!;
    const started = Date.now();
    for (;;) {
      const [job] = await t.db.query(`SELECT state FROM pgboss.job WHERE name = 'public-health.bulk-export' AND data->>'exportId' = $1`, [runningId]);
      if (job?.state === 'completed') break;
      if (Date.now() - started > 30_000) throw new Error(`the cancelled export's job did not end: ${job?.state}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(existsSync(join(EXPORT_DIR, runningId))).toBe(false);
    expect((await get(running, tokenB)).status).toBe(404);
  }, 90_000);

  it('a job that restarts mid-export keeps the types it finished and rewrites the interrupted one from the start', async () => {
    // The state a worker leaves when it dies while writing Observation: Patient recorded, Observation half-written.
    const id = randomUUID();
    const principal = { kind: 'client', clientId: clientB.clientId, organization: HOSPITAL_B, role: 'hospital', scopes: ['system/*.cruds'], purposeOfUse: 'TREAT' };
    const params = { level: 'system', types: ['Patient', 'Observation', 'Condition'], typeFilters: {} };
    const patientLine = '{"resourceType":"Patient","id":"kept-from-the-first-attempt"}\n';
    await t.db.query(
      `INSERT INTO bulk_export (id, client_id, principal, request, params, status, progress, transaction_time, output, bytes)
       VALUES ($1, $2, $3, 'http://localhost/fhir/$export', $4, 'in-progress', 'writing Observation', now(), $5, $6)`,
      [id, clientB.clientId, JSON.stringify(principal), JSON.stringify(params), JSON.stringify([{ type: 'Patient', file: 'Patient.ndjson', count: 1, bytes: patientLine.length }]), patientLine.length],
    );
    mkdirSync(join(EXPORT_DIR, id), { recursive: true });
    writeFileSync(join(EXPORT_DIR, id, 'Patient.ndjson'), patientLine);
    writeFileSync(join(EXPORT_DIR, id, 'Observation.ndjson'), '{"resourceType":"Observation","id":"half-writ');
    // A dead worker is noticed by its missing heartbeat (a minute), not by the job's 12-hour expiry.
    expect(await t.db.query(`SELECT heartbeat_seconds, expire_seconds FROM pgboss.queue WHERE name = 'public-health.bulk-export'`)).toEqual([{ heartbeat_seconds: 60, expire_seconds: 43200 }]);
    // The retry pg-boss delivers after the dead worker's heartbeat stopped.
    await t.app.get(BulkExportJob).run({ id: randomUUID(), queue: 'public-health.bulk-export', data: { exportId: id }, retryCount: 1 });
    const manifest = await manifestOf(`/bulk-export/${id}`);
    expect(manifest.output.map((o) => [o.type, o.count])).toEqual([
      ['Patient', 1],
      ['Observation', await searchTotal(`Observation?_lastUpdated=le${encodeURIComponent(manifest.transactionTime)}`)],
      ['Condition', await searchTotal(`Condition?_lastUpdated=le${encodeURIComponent(manifest.transactionTime)}`)],
    ]);
    expect(readFileSync(join(EXPORT_DIR, id, 'Patient.ndjson'), 'utf8')).toBe(patientLine);
    const observations = await linesOf(manifest.output[1].url);
    expect(observations.length).toBe(manifest.output[1].count);
    expect(observations.every((o) => o.resourceType === 'Observation' && o.id !== 'half-writ')).toBe(true);
  }, 90_000);

  it('fails cleanly with the reason when the requesting client was disabled before its job ran', async () => {
    const client = await registerTestClient(t, { role: 'hospital', organization: HOSPITAL_B, scopes: ['system/*.rs'] });
    const id = randomUUID();
    const principal = { kind: 'client', clientId: client.clientId, organization: HOSPITAL_B, role: 'hospital', scopes: ['system/*.rs'], purposeOfUse: 'TREAT' };
    await t.db.query(
      `INSERT INTO bulk_export (id, client_id, principal, request, params, status, transaction_time) VALUES ($1, $2, $3, 'x', $4, 'accepted', now())`,
      [id, client.clientId, JSON.stringify(principal), JSON.stringify({ level: 'system', types: ['Patient'], typeFilters: {} })],
    );
    const token = await client.token();
    await t.db.query(`UPDATE oauth_client SET disabled = true WHERE client_id = $1`, [client.clientId]);
    await t.app.get(BulkExportJob).run({ id: randomUUID(), queue: 'public-health.bulk-export', data: { exportId: id }, retryCount: 0 });
    const [row] = await t.db.query(`SELECT status, error FROM bulk_export WHERE id = $1`, [id]);
    expect(row).toEqual({ status: 'failed', error: 'The client that asked for this export is no longer registered or is disabled' });
    expect(existsSync(join(EXPORT_DIR, id))).toBe(false);
    await t.db.query(`UPDATE oauth_client SET disabled = false WHERE client_id = $1`, [client.clientId]);
    const status = await get(`/bulk-export/${id}`, token);
    expect({ status: status.status, code: status.body.issue?.[0]?.code, diagnostics: status.body.issue?.[0]?.diagnostics }).toEqual({
      status: 500,
      code: 'exception',
      diagnostics: 'The client that asked for this export is no longer registered or is disabled',
    });
  }, 60_000);

  it('de-identified (Safe Harbor): an agency without clinical access gets the PUBHLTH view with no name, identifier, phone, street, id or full date of the generated data', async () => {
    // Patients 2-4 permit public-health use; the others are outside the PUBHLTH view (opt-out shares PUBHLTH only where permitted).
    for (const n of [2, 3, 4]) {
      const res = await request(t.http)
        .post('/fhir/Consent')
        .set('Authorization', `Bearer ${tokenA}`)
        .set('Content-Type', FHIR_JSON)
        .send(
          consentResource(
            gen.patientId(n),
            { type: 'permit', purpose: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActReason', code: 'PUBHLTH' }] },
            { policyRule: { coding: [{ system: ACT, code: 'OPTIN' }] } },
          ),
        );
      expect(res.status).toBe(201);
    }
    const agency = await (await registerTestClient(t, { role: 'public-health', organization: `bx-agency-${RUN}`, scopes: ['system/*.rs'], purposes: ['PUBHLTH'] })).token();
    const types = ['Patient', 'Observation', 'Condition', 'Encounter', 'Immunization', 'Coverage'];
    const manifest = await manifestOf(await kickOff(`/fhir/$export?deidentified=true&_type=${types.join(',')}`, agency), agency);
    // The counts are what an agency with clinical access sees by search (the PUBHLTH view).
    const clinical = await (await registerTestClient(t, { role: 'public-health', organization: `bx-agency2-${RUN}`, scopes: ['system/*.rs'], purposes: ['PUBHLTH'], clinicalAccess: true })).token();
    const expected: [string, number][] = [];
    for (const type of types) {
      const total = await searchTotal(type, clinical);
      if (total) expected.push([type, total]);
    }
    expect(expected[0]).toEqual(['Patient', 3]);
    expect(manifest.output.map((o) => [o.type, o.count])).toEqual(expected);

    const files: Record<string, Resource[]> = {};
    let text = '';
    for (const o of manifest.output) {
      files[o.type] = await linesOf(o.url, agency);
      text += files[o.type].map((r) => JSON.stringify(r)).join('\n');
    }
    // Every identifying value of the generated data, searched for in the files.
    const identifying = new Set<string>();
    const collect = (v: unknown, key = ''): void => {
      if (Array.isArray(v)) v.forEach((x) => collect(x, key));
      else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) collect(x, k);
      else if (typeof v === 'string') {
        if (['family', 'given', 'value', 'line', 'id', 'reference'].includes(key)) identifying.add(key === 'reference' ? v.split('/')[1] : v);
        const date = /^\d{4}-\d{2}-\d{2}/.exec(v);
        if (date) identifying.add(date[0]);
      }
    };
    for (const r of resources) collect(r);
    expect([...identifying].filter((v) => /^555-\d{4}$/.test(v)).length).toBeGreaterThan(0);
    expect([...identifying].filter((v) => /Road|Street|Lane|Ave/.test(v)).length).toBeGreaterThan(0);
    // Short values (a given name like "Jan") are looked for as whole JSON strings, longer ones anywhere.
    expect([...identifying].filter((v) => (v.length >= 4 ? text.includes(v) : text.includes(JSON.stringify(v))))).toEqual([]);
    expect(text).not.toMatch(/\d{4}-\d{2}-\d{2}/);
    // Pseudonyms are consistent across files: each Observation's subject is a Patient of the export.
    const patientIds = new Set(files.Patient.map((p) => p.id));
    expect(patientIds.size).toBe(3);
    const subjects = (files.Observation ?? []).map((o) => (o as { subject?: { reference?: string } }).subject?.reference);
    expect(subjects.length).toBeGreaterThan(0);
    expect(subjects.every((s) => !!s && patientIds.has(s.replace('Patient/', '')))).toBe(true);
    for (const p of files.Patient as { name?: unknown; telecom?: unknown; identifier?: unknown; address?: { line?: unknown; city?: unknown }[]; birthDate?: string }[]) {
      expect([p.name, p.telecom, p.identifier, p.address?.[0]?.line, p.address?.[0]?.city]).toEqual([undefined, undefined, undefined, undefined, undefined]);
      expect(p.birthDate === undefined || /^\d{4}$/.test(p.birthDate)).toBe(true);
    }
    // The re-identification key is gone with the export's end.
    expect(await t.db.query(`SELECT count(*)::int AS n FROM bulk_export_pseudonym`)).toEqual([{ n: 0 }]);
    // An identified export stays closed to this agency; the agency with clinical access gets the permitted patients, identified.
    const identified = await get('/fhir/$export', agency).set(KICK_OFF);
    expect(identified.status).toBe(403);
    const clinicalExport = await manifestOf(await kickOff('/fhir/Patient/$export?_type=Patient', clinical), clinical);
    expect(clinicalExport.output.map((o) => [o.type, o.count])).toEqual([['Patient', 3]]);
    expect((await linesOf(clinicalExport.output[0].url, clinical)).map((p) => p.id).sort()).toEqual([2, 3, 4].map((n) => gen.patientId(n)).sort());
  }, 90_000);

  it('deletes the files when the export expires; the status then answers 404', async () => {
    const status = await kickOff('/fhir/$export?_type=Patient');
    const manifest = await manifestOf(status);
    const id = status.split('/').pop()!;
    const [{ expires }] = await t.db.query(`SELECT extract(epoch FROM expires_at - completed_at)::int AS expires FROM bulk_export WHERE id = $1`, [id]);
    expect(expires).toBe(24 * 3600);
    // The expiry job (enqueued with the completion, due in EXPORT_EXPIRE_HOURS), run now.
    await t.app.get(BulkExportJob).expire(id);
    expect(existsSync(join(EXPORT_DIR, id))).toBe(false);
    const res = await get(status, tokenB);
    expect({ status: res.status, diagnostics: res.body.issue?.[0]?.diagnostics }).toEqual({ status: 404, diagnostics: `Export ${id} was expired` });
    expect((await get(new URL(manifest.output[0].url).pathname, tokenB)).status).toBe(404);
  }, 60_000);

  it('POST kick-off with a Parameters body (the bulk-data-client form) gives what the GET form gives', async () => {
    const res = await request(t.http)
      .post('/fhir/$export')
      .set('Authorization', `Bearer ${tokenB}`)
      .set(KICK_OFF)
      .set('Content-Type', FHIR_JSON)
      .send({
        resourceType: 'Parameters',
        parameter: [
          { name: '_type', valueString: 'Condition' },
          { name: '_outputFormat', valueString: 'application/fhir+ndjson' },
          { name: '_since', valueInstant: '2000-01-01T00:00:00Z' },
        ],
      });
    expect(res.status).toBe(202);
    const manifest = await manifestOf(new URL(res.headers['content-location'] as string).pathname);
    expect(manifest.output.map((o) => [o.type, o.count])).toEqual([['Condition', await searchTotal('Condition')]]);
    const wrong = await request(t.http)
      .post('/fhir/$export')
      .set('Authorization', `Bearer ${tokenB}`)
      .set(KICK_OFF)
      .set('Content-Type', FHIR_JSON)
      .send({ resourceType: 'Parameters', parameter: [{ name: '_since', valueString: 'last week' }] });
    expect({ status: wrong.status, expression: wrong.body.issue?.[0]?.expression }).toEqual({ status: 400, expression: ['_since'] });
  }, 60_000);

  it('a client with restricted scopes exports only what its scopes let it search', async () => {
    const scopes = ['system/Patient.rs', 'system/Observation.rs?category=laboratory'];
    const token = await (await registerTestClient(t, { role: 'hospital', organization: HOSPITAL_B, scopes })).token();
    const manifest = await manifestOf(await kickOff('/fhir/$export', token), token);
    const laboratory = await searchTotal('Observation', token);
    expect(laboratory).toBe(await searchTotal('Observation?category=laboratory'));
    expect(laboratory).toBeLessThan(await searchTotal('Observation'));
    // Without _type: the types its scopes allow, nothing else.
    expect(manifest.output.map((o) => [o.type, o.count])).toEqual([
      ['Observation', laboratory],
      ['Patient', 6],
    ]);
    const refused = await get('/fhir/$export?_type=Condition', token).set(KICK_OFF);
    expect({ status: refused.status, diagnostics: refused.body.issue?.[0]?.diagnostics }).toEqual({ status: 403, diagnostics: 'This client may not search Condition (named in _type)' });
    // A Group export needs the right to read the Group.
    const group = await request(t.http)
      .post('/fhir/Group')
      .set('Authorization', `Bearer ${tokenB}`)
      .set('Content-Type', FHIR_JSON)
      .send({ resourceType: 'Group', type: 'person', actual: true, member: [{ entity: { reference: `Patient/${gen.patientId(2)}` } }] });
    const noGroup = await get(`/fhir/Group/${group.body.id}/$export?_type=Patient`, token).set(KICK_OFF);
    expect({ status: noGroup.status, diagnostics: noGroup.body.issue?.[0]?.diagnostics }).toEqual({ status: 403, diagnostics: 'This client may not read Group resources' });
  }, 60_000);

  it('an export that would exceed the disk quota fails with the reason and leaves no files', async () => {
    const config = t.app.get<AppConfig>(APP_CONFIG);
    const quota = config.bulkExport.quotaBytes;
    // Room for the other exports' files and a few hundred bytes more.
    const [{ used }] = await t.db.query(`SELECT coalesce(sum(bytes), 0)::int AS used FROM bulk_export WHERE status IN ('in-progress', 'completed')`);
    config.bulkExport.quotaBytes = used + 300;
    try {
      const status = await kickOff('/fhir/$export?_type=Observation');
      const started = Date.now();
      let res = await get(status, tokenB);
      while (res.status === 202 && Date.now() - started < 30_000) {
        await new Promise((r) => setTimeout(r, 250));
        res = await get(status, tokenB);
      }
      expect({ status: res.status, code: res.body.issue?.[0]?.code, diagnostics: res.body.issue?.[0]?.diagnostics }).toEqual({
        status: 500,
        code: 'exception',
        diagnostics: `The export directory's quota (${used + 300} bytes) would be exceeded`,
      });
      expect(existsSync(join(EXPORT_DIR, status.split('/').pop()!))).toBe(false);
    } finally {
      config.bulkExport.quotaBytes = quota;
    }
  }, 60_000);

  it('refuses a kick-off without Prefer: respond-async or Accept: application/fhir+json, and bad parameters, with 400 naming them', async () => {
    const cases: [string, Record<string, string>, string, string][] = [
      ['/fhir/$export', { Accept: 'application/fhir+json' }, 'Prefer', 'Prefer: respond-async'],
      ['/fhir/$export', { Prefer: 'respond-async', Accept: 'application/json' }, 'Accept', 'Accept: application/fhir+json'],
      ['/fhir/$export?_outputFormat=text/csv', KICK_OFF, '_outputFormat', "_outputFormat 'text/csv' is not supported"],
      ['/fhir/$export?_type=Nope', KICK_OFF, '_type', "'Nope' in _type is not a resource type"],
      ['/fhir/Patient/$export?_type=Organization', KICK_OFF, '_type', "'Organization' in _type is not a type of the Patient compartment"],
      ['/fhir/$export?_since=yesterday', KICK_OFF, '_since', "Parameter '_since' of $export must be a FHIR instant"],
      ['/fhir/$export?_type=Patient&_typeFilter=Observation%3Fcode%3D1', KICK_OFF, '_typeFilter', '_typeFilter names Observation, which this export does not include'],
      ['/fhir/$export?_type=Observation&_typeFilter=Observation%3F_count%3D5', KICK_OFF, '_typeFilter', '_typeFilter may not use _count'],
      ['/fhir/$export?_type=Observation&_typeFilter=Observation%3Fnope%3D1', KICK_OFF, '_typeFilter', '_typeFilter for Observation:'],
    ];
    const before = await t.db.query(`SELECT count(*)::int AS n FROM bulk_export`);
    for (const [path, headers, expression, diagnostics] of cases) {
      const res = await get(path, tokenB).set(headers);
      expect({ path, status: res.status, code: res.body.issue?.[0]?.code, expression: res.body.issue?.[0]?.expression }).toEqual({ path, status: 400, code: 'invalid', expression: [expression] });
      expect(res.body.issue[0].diagnostics).toContain(diagnostics);
    }
    expect(await t.db.query(`SELECT count(*)::int AS n FROM bulk_export`)).toEqual(before);
  });

  it('admins, auditors and public health without clinical access may not export; the per-client limit answers 429', async () => {
    for (const role of ['admin', 'auditor'] as const) {
      const token = await (await registerTestClient(t, { role, scopes: ['system/*.rs'] })).token();
      const res = await get('/fhir/$export', token).set(KICK_OFF);
      expect({ role, status: res.status, code: res.body.issue?.[0]?.code }).toEqual({ role, status: 403, code: 'forbidden' });
    }
    const agency = await (await registerTestClient(t, { role: 'public-health', scopes: ['system/*.rs'], purposes: ['PUBHLTH'] })).token();
    const res = await get('/fhir/$export', agency).set(KICK_OFF);
    expect({ status: res.status, diagnostics: res.body.issue?.[0]?.diagnostics }).toEqual({
      status: 403,
      diagnostics: 'An identified export needs a public-health client registered with clinical access; ask for deidentified=true',
    });

    // Two exports of this client accepted already (rows as a kick-off stores them, no job to finish them).
    const client = await registerTestClient(t, { role: 'hospital', organization: HOSPITAL_B, scopes: ['system/*.rs'] });
    for (const n of [1, 2]) {
      await t.db.query(
        `INSERT INTO bulk_export (id, client_id, principal, request, params, status, transaction_time) VALUES ($1, $2, '{}', 'x', '{}', 'accepted', now())`,
        [`00000000-0000-4000-8000-00000000000${n}`, client.clientId],
      );
    }
    const third = await get('/fhir/$export?_type=Patient', await client.token()).set(KICK_OFF);
    expect({ status: third.status, code: third.body.issue?.[0]?.code, retryAfter: third.headers['retry-after'] }).toEqual({ status: 429, code: 'throttled', retryAfter: '60' });
    expect(third.body.issue[0].diagnostics).toBe('This client has 2 exports accepted or running (at most 2); retry when one has finished');
  });
});
