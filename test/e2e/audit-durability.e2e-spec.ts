import { ChildProcess, execFile, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { registerTestClient } from '../support/auth';
import { FHIR_JSON, hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/**
 * The real server (compiled main.ts, a child process on the test database): its application logs
 * carry no PHI, and `kill -9` during load loses no audit record of a request that got a 2xx.
 */
describe('audit durability and logs of a real server process', () => {
  let t: TestApp;
  let child: ChildProcess | undefined;
  let base: string;
  let logs = '';
  // Compiled beside dist/ (the code finds config/ and fhir-profiles/ relative to itself); removed after.
  const outDir = join(__dirname, '..', '..', `dist-audit-test-${process.pid}`);

  beforeAll(async () => {
    t = await createTestApp(); // the test database, migrated
    await promisify(execFile)(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.build.json', '--outDir', outDir], { cwd: join(__dirname, '..', '..') });
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    child = spawn(process.execPath, [join(outDir, 'main.js')], {
      cwd: join(__dirname, '..', '..'),
      env: { ...process.env, PORT: String(port), LOG_LEVEL: 'info', NODE_ENV: 'production', PUBLIC_BASE_URL: base, RATE_LIMIT_PER_MINUTE: '100000' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.on('data', (d: Buffer) => (logs += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (logs += d.toString()));
    const started = Date.now();
    while (!logs.includes('FHIR server listening')) {
      if (Date.now() - started > 60_000 || child.exitCode !== null) throw new Error(`server did not start: ${logs.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }, 300_000); // compiling the server takes minutes on a loaded machine
  afterAll(async () => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    rmSync(outDir, { recursive: true, force: true });
    await t.close();
  });

  async function token(clientId: string, secret: string, scope: string): Promise<string> {
    const res = await fetch(`${base}/oauth2/token`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', client_id: clientId, client_secret: secret, scope }),
    });
    expect(res.status).toBe(200);
    return ((await res.json()) as { access_token: string }).access_token;
  }

  it('logs no names, identifiers or birth dates of the patients it served', async () => {
    const hospital = await registerTestClient(t, { role: 'hospital' });
    const bearer = { Authorization: `Bearer ${await token(hospital.clientId, hospital.secret, 'system/*.*')}` };
    const phi = { family: 'Quetzalcoatl-Phi', given: 'Xiomara', mrn: 'PHI-MRN-90210', birthDate: '1961-07-13' };
    const created = await fetch(`${base}/fhir/Patient`, {
      method: 'POST',
      headers: { ...bearer, 'Content-Type': FHIR_JSON },
      body: JSON.stringify(hiePatient({ name: [{ family: phi.family, given: [phi.given] }], identifier: [{ system: 'urn:mrn', value: phi.mrn }], birthDate: phi.birthDate })),
    });
    expect(created.status).toBe(201);
    const { id } = (await created.json()) as { id: string };
    for (const path of [
      `/fhir/Patient/${id}`,
      `/fhir/Patient?name=${phi.family}`,
      `/fhir/Patient?identifier=urn:mrn|${phi.mrn}&birthdate=${phi.birthDate}`,
      `/fhir/Patient?given=${phi.given}&_count=notanumber`,
    ]) {
      await (await fetch(base + path, { headers: bearer })).text();
    }
    const bad = await fetch(`${base}/fhir/Patient/${id}`, {
      method: 'PUT',
      headers: { ...bearer, 'Content-Type': FHIR_JSON },
      body: JSON.stringify({ resourceType: 'Patient', id, name: [{ family: phi.family }], gender: phi.given }),
    });
    expect(bad.status).toBe(400);
    await new Promise((r) => setTimeout(r, 200)); // let the log lines flush
    // The logs are there: the create's line names the client and the interaction (counts, not ids).
    expect(logs).toContain(`"audit":{"interaction":"create","action":"C","client":"${hospital.clientId}"`);
    for (const value of [phi.family, phi.given, phi.mrn, phi.birthDate]) expect(logs).not.toContain(value);
    expect(logs).not.toContain('Quetzalcoatl'); // not even in part (URL-encoded or cut)
    // The stored trail does keep the search query (for auditors).
    const [{ n }] = await t.db.query(`SELECT count(*)::int AS n FROM audit_event WHERE $1::text = ANY(patients) AND content::jsonb @> '{"entity": [{"role": {"code": "24"}}]}'`, [id]);
    expect(n).toBeGreaterThanOrEqual(1);
  }, 60_000);

  it('writes exactly one log line per request, with the audit fields and no query values, bodies or patient ids', async () => {
    const hospital = await registerTestClient(t, { role: 'hospital', organization: 'org-one-line' });
    const bearer = { Authorization: `Bearer ${await token(hospital.clientId, hospital.secret, 'system/*.*')}` };
    const tag = `oneline${Date.now().toString(36)}`;
    let id = '';
    const send = async (requestId: string, path: string, init: RequestInit = {}): Promise<number> => {
      const res = await fetch(base + path, { ...init, headers: { ...bearer, 'Content-Type': FHIR_JSON, 'X-Request-Id': `${tag}-${requestId}`, ...(init.headers ?? {}) } });
      const body = (await res.json()) as { id?: string };
      if (requestId === 'create') id = body.id!;
      return res.status;
    };
    const patient = hiePatient({ name: [{ family: 'Onelinefamily' }], identifier: [{ system: 'urn:mrn', value: 'ONE-LINE-MRN' }] });
    expect(await send('create', '/fhir/Patient', { method: 'POST', body: JSON.stringify(patient) })).toBe(201);
    expect(await send('read', `/fhir/Patient/${id}`)).toBe(200);
    expect(await send('search', `/fhir/Observation?subject=Patient/${id}&code=ONE-LINE-CODE`)).toBe(200);
    expect(await send('missing', '/fhir/Patient/does-not-exist-one-line')).toBe(404);
    const bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [1, 2].map((n) => ({
        resource: { resourceType: 'Observation', status: 'final', code: { text: `one-line ${n}` }, subject: { reference: `Patient/${id}` } },
        request: { method: 'POST', url: 'Observation' },
      })),
    };
    expect(await send('bundle', '/fhir', { method: 'POST', body: JSON.stringify(bundle) })).toBe(200);
    expect(await send('anonymous', '/fhir/Patient', { headers: { Authorization: '' } })).toBe(401);
    await new Promise((r) => setTimeout(r, 300)); // let the log lines flush
    const linesOf = (requestId: string) => logs.split('\n').filter((l) => l.includes(`${tag}-${requestId}`)).map((l) => JSON.parse(l));
    const one = (requestId: string) => {
      const lines = linesOf(requestId);
      expect(lines).toHaveLength(1);
      return lines[0];
    };
    const common = { level: 30, req: { method: expect.any(String) }, durationMs: expect.any(Number) };
    const agent = { client: hospital.clientId, organization: 'org-one-line', role: 'hospital', purposeOfUse: 'TREAT', auditRecords: 1 };
    expect(one('create')).toMatchObject({ ...common, msg: 'request completed 201', req: { id: `${tag}-create`, method: 'POST' }, res: { status: 201 }, route: '/fhir/:type',
      audit: { ...agent, interaction: 'create', action: 'C', resourceType: 'Patient', outcome: 'success', patients: 1, resources: 1 } });
    expect(one('read')).toMatchObject({ ...common, msg: 'request completed 200', res: { status: 200 }, route: '/fhir/:type/:id',
      audit: { ...agent, interaction: 'read', action: 'R', resourceType: 'Patient', outcome: 'success', accessBasis: ['consent'], patients: 1, resources: 1 } });
    expect(one('search')).toMatchObject({ ...common, res: { status: 200 }, route: '/fhir/:type',
      audit: { ...agent, interaction: 'search-type', action: 'R', resourceType: 'Observation', outcome: 'success', patients: 0, resources: 0 } });
    expect(one('missing')).toMatchObject({ ...common, msg: 'request completed 404', res: { status: 404 },
      audit: { ...agent, interaction: 'read', outcome: 'failure', failureCode: 'not-found', patients: 0 } });
    // A transaction: one line for the Bundle, its entries counted on it.
    expect(one('bundle')).toMatchObject({ ...common, res: { status: 200 }, route: '/fhir',
      audit: { ...agent, interaction: 'transaction', outcome: 'success', patients: 1, resources: 2, auditRecords: 3 } });
    expect(one('anonymous')).toMatchObject({ ...common, res: { status: 401 }, audit: { interaction: 'authenticate', outcome: 'failure', auditRecords: 1 } });
    // No separate audit line for a request any more (internal work of no request, such as the
    // statistics' context minted at start, still has its own), and nothing of the query, the body
    // or the patient's id.
    const ours = logs.split('\n').filter((l) => l.includes(tag)).join('\n');
    expect(ours).not.toMatch(/"msg":"audit"/);
    for (const value of ['ONE-LINE-CODE', 'Onelinefamily', 'ONE-LINE-MRN', 'one-line 1', id, 'subject=', '"url"', '"query"', '"headers"']) expect(ours).not.toContain(value);
  }, 60_000);

  it('kill -9 during load loses no audit record of a request that got a 2xx', async () => {
    const hospital = await registerTestClient(t, { role: 'hospital' });
    const bearer = { Authorization: `Bearer ${await token(hospital.clientId, hospital.secret, 'system/*.*')}` };
    const created = await fetch(`${base}/fhir/Patient`, { method: 'POST', headers: { ...bearer, 'Content-Type': FHIR_JSON }, body: JSON.stringify(hiePatient()) });
    const { id } = (await created.json()) as { id: string };
    const prefix = `kill9${Date.now().toString(36)}`;
    const succeeded: string[] = [];
    let n = 0;
    let killed = false;
    const worker = async (): Promise<void> => {
      while (!killed) {
        const requestId = `${prefix}-${n++}`;
        const write = n % 3 === 0;
        try {
          const res = await fetch(`${base}/fhir/${write ? 'Observation' : `Patient/${id}`}`, {
            method: write ? 'POST' : 'GET',
            headers: { ...bearer, 'X-Request-Id': requestId, 'Content-Type': FHIR_JSON },
            ...(write ? { body: JSON.stringify({ resourceType: 'Observation', status: 'final', code: { text: 'pulse' }, subject: { reference: `Patient/${id}` } }) } : {}),
          });
          await res.text();
          if (res.status >= 200 && res.status < 300) succeeded.push(requestId);
        } catch {
          // Connection cut by the kill: no response, so no promise was made.
        }
      }
    };
    const workers = Array.from({ length: 8 }, () => worker());
    // Kill mid-load: after 150 successes, or after 15 s on a slow machine.
    const loadStarted = Date.now();
    while (succeeded.length < 150 && Date.now() - loadStarted < 15_000) await new Promise((r) => setTimeout(r, 10));
    child!.kill('SIGKILL');
    killed = true;
    await Promise.all(workers);
    expect(succeeded.length).toBeGreaterThanOrEqual(20);
    const [{ missing }] = await t.db.query(
      `SELECT count(*)::int AS missing FROM unnest($1::text[]) rid
       WHERE NOT EXISTS (SELECT 1 FROM audit_event a WHERE (a.content::jsonb)->'entity' @> jsonb_build_array(jsonb_build_object('what', jsonb_build_object('identifier', jsonb_build_object('value', rid)))))`,
      [succeeded],
    );
    expect(missing).toBe(0);
    // And the chain the killed node left behind verifies.
    const { AuditTrailRepository } = await import('../../src/audit/audit-trail.repository');
    expect((await t.app.get(AuditTrailRepository).verify()).broken).toBeUndefined();
  }, 120_000);
});
