import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { registerTestClient } from '../support/auth';
import { postTransaction } from '../support/bundles';
import { hiePatient } from '../support/fixtures';
import { freePort } from '../support/scratch-postgres';
import { compileServer, removeCompiledServer, ServerProcess, startServer } from '../support/server-process';
import { createTestApp, TestApp } from '../support/test-app';

const PATIENTS = 20;
const OBSERVATIONS = 3000;

interface ManifestOutput {
  type: string;
  url: string;
  count: number;
}

/**
 * Issue 26, export: a restart mid-export on the real, compiled server. The server process is killed
 * with SIGKILL while it writes the second type of an export; a new server process on the same
 * database resumes the job once the dead worker's heartbeat is missed (60 s, plus the supervisor's
 * interval): the finished type's file is kept as it was, the interrupted one rewritten, and the
 * manifest lists exactly what the client's search sees. (bulk-export.e2e-spec.ts covers the
 * resumed job's logic in process; this proves the crash path end to end.)
 */
describe('Bulk Data export across a server crash (kill -9)', () => {
  let t: TestApp;
  let main: string;
  let exportDir: string;
  let httpPort: number;
  let token: string;
  let client: { clientId: string; secret: string };
  const running: ServerProcess[] = [];
  const jobsWorkers = process.env.JOBS_WORKERS;

  const start = () => {
    const server = startServer(main, {
      DATABASE_URL: process.env.DATABASE_URL!,
      PORT: String(httpPort),
      EXPORT_DIR: exportDir,
      EXPORT_PAGE_SIZE: '10',
      // This process's app runs none (JOBS_WORKERS=off, inherited otherwise): the child servers work the export.
      JOBS_WORKERS: 'on',
      // The supervisor retries a job whose heartbeat stopped; checking every second keeps the test short.
      JOBS_SUPERVISE_SECONDS: '1',
      JOBS_POLL_SECONDS: '0.5',
    });
    running.push(server);
    return server;
  };
  const base = () => `http://127.0.0.1:${httpPort}`;

  beforeAll(async () => {
    main = compileServer();
    // The in-process app seeds data and registers the client; only the child servers work jobs.
    process.env.JOBS_WORKERS = 'off';
    t = await createTestApp();
    exportDir = mkdtempSync(join(tmpdir(), 'hie-export-restart-'));
    httpPort = await freePort();
    client = await registerTestClient(t, { role: 'hospital', organization: 'org-test', scopes: ['system/*.rs'] });
    const patients = Array.from({ length: PATIENTS }, (_, i) => ({ fullUrl: `urn:uuid:00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, resource: hiePatient({ identifier: [{ system: 'http://hospital-a.example.org/mrn', value: `R-${i}` }] }), request: { method: 'POST', url: 'Patient' } }));
    expect((await postTransaction(t.api, patients)).status).toBe(200);
    for (let chunk = 0; chunk < OBSERVATIONS / 1000; chunk++) {
      const entries = Array.from({ length: 1000 }, (_, i) => ({
        resource: {
          resourceType: 'Observation',
          status: 'final',
          code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
          subject: { reference: `Patient?identifier=http://hospital-a.example.org/mrn|R-${(chunk * 1000 + i) % PATIENTS}` },
          valueQuantity: { value: 60 + (i % 40), unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
        },
        request: { method: 'POST', url: 'Observation' },
      }));
      expect((await postTransaction(t.api, entries)).status).toBe(200);
    }
  }, 300_000);

  afterAll(async () => {
    for (const s of running) if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGTERM');
    await Promise.all(running.map((s) => s.exited));
    await t?.close();
    if (jobsWorkers === undefined) delete process.env.JOBS_WORKERS;
    else process.env.JOBS_WORKERS = jobsWorkers;
    if (exportDir) rmSync(exportDir, { recursive: true, force: true });
    removeCompiledServer();
  }, 60_000);

  it('resumes after the server was killed mid-export: the finished type kept, the interrupted one rewritten, counts as by search', async () => {
    const first = start();
    await first.waitFor('FHIR server listening', 150_000);
    // A token of the server under test (its issuer and audience are its own URL).
    const issued = await request(base()).post('/oauth2/token').type('form').send({ grant_type: 'client_credentials', client_id: client.clientId, client_secret: client.secret, scope: 'system/*.rs', purpose_of_use: 'TREAT' });
    expect(issued.status).toBe(200);
    token = issued.body.access_token as string;
    const kickOff = await request(base()).get('/fhir/$export?_type=Patient,Observation').set('Authorization', `Bearer ${token}`).set('Prefer', 'respond-async').set('Accept', 'application/fhir+json');
    expect(kickOff.status).toBe(202);
    const status = new URL(kickOff.headers['content-location'] as string).pathname;
    const id = status.split('/').pop()!;

    // Wait until Patient is recorded and Observation is being written, then kill the process without a word.
    let row: { status: string; output: { type: string }[] } | undefined;
    for (const until = Date.now() + 120_000; Date.now() < until; ) {
      [row] = await t.db.query(`SELECT status, output FROM bulk_export WHERE id = $1`, [id]);
      if (row?.output.some((o) => o.type === 'Patient')) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    first.child.kill('SIGKILL');
    expect(await first.exited).toBe('SIGKILL');
    expect(row).toMatchObject({ status: 'in-progress', output: [{ type: 'Patient' }] });
    const patientFile = join(exportDir, id, 'Patient.ndjson');
    const patientWritten = statSync(patientFile).mtimeMs;
    const [job] = await t.db.query(`SELECT state, retry_count FROM pgboss.job WHERE name = 'public-health.bulk-export' AND data->>'exportId' = $1`, [id]);
    expect(job).toEqual({ state: 'active', retry_count: 0 });

    const second = start();
    await second.waitFor('FHIR server listening', 150_000);
    let manifest: { transactionTime: string; output: ManifestOutput[]; error: unknown[] } | undefined;
    for (let i = 0; i < 240 && !manifest; i++) {
      const res = await request(base()).get(status).set('Authorization', `Bearer ${token}`);
      if (res.status === 200) manifest = res.body;
      else {
        // Until the retry finishes: still in progress, never an error.
        expect(res.status).toBe(202);
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
    expect(manifest).toBeDefined();
    expect(manifest!.error).toEqual([]);
    expect(manifest!.output.map((o) => [o.type, o.count])).toEqual([
      ['Patient', PATIENTS],
      ['Observation', OBSERVATIONS],
    ]);
    // The finished type was not written again; the interrupted one holds each Observation once.
    expect(statSync(patientFile).mtimeMs).toBe(patientWritten);
    const lines = await request(base()).get(manifest!.output[1].url.replace(/^https?:\/\/[^/]+/, '')).set('Authorization', `Bearer ${token}`).buffer(true).parse((res, cb) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString('utf8')));
      res.on('end', () => cb(null, text));
    });
    expect(lines.status).toBe(200);
    const ids = (lines.body as string).trim().split('\n').map((l) => (JSON.parse(l) as { id: string }).id);
    expect(ids.length).toBe(OBSERVATIONS);
    expect(new Set(ids).size).toBe(OBSERVATIONS);
    const [after] = await t.db.query(`SELECT state, retry_count FROM pgboss.job WHERE name = 'public-health.bulk-export' AND data->>'exportId' = $1`, [id]);
    expect(after).toEqual({ state: 'completed', retry_count: 1 });
  }, 420_000);
});
