import { ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { FHIR_JSON, hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';
import { createTestDatabase } from '../support/test-database';
import { APP_ROLE, CREDENTIALS_FILE } from '../../src/database/embedded-postgres';

/**
 * The compiled entry points as an operator runs them, each in a child process: `npm run
 * migration:run`, the server (dist/main.js) with its embedded PostgreSQL, configuration errors,
 * SIGTERM, the first-admin bootstrap, `npm run reindex`, the CLI, and what the request log holds.
 * beforeAll builds dist/ through `npm run migration:run` (the only build in the suite; no other test
 * file uses dist/, so parallel files are unaffected).
 */
const ROOT = join(__dirname, '..', '..');

interface Run {
  code: number | null;
  out: string;
  err: string;
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, timeout = 120_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: ROOT, env, timeout, maxBuffer: 64 * 1024 * 1024 }, (error, out, err) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? null) : 0, out: String(out), err: String(err) });
    });
  });
}

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

function portAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });
}

/** The environment of a child: this file's own (its database), minus whatever the test overrides. */
function childEnv(overrides: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_ENV: 'production', LOG_LEVEL: 'info' };
  for (const [k, v] of Object.entries(overrides)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

async function schemaOf(url: string): Promise<unknown> {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    const objects = await c.query(`SELECT relname, relkind FROM pg_class WHERE relnamespace = 'public'::regnamespace ORDER BY relname`);
    const migrations = await c.query(`SELECT name FROM schema_migrations ORDER BY id`);
    return { objects: objects.rows, migrations: migrations.rows.map((r: { name: string }) => r.name) };
  } finally {
    await c.end();
  }
}

let firstMigration: Run;
let emptyDb: string;

beforeAll(async () => {
  emptyDb = await createTestDatabase({ empty: true });
  // The build is CPU-heavy and the other files run beside this one: at low priority it does not starve their hooks.
  // Generous: on a loaded shared 2-core machine the build alone has taken minutes.
  firstMigration = await run('nice', ['-n', '15', 'npm', 'run', '-s', 'migration:run'], childEnv({ DATABASE_URL: emptyDb }), 600_000);
}, 660_000);

describe('migrations', () => {
  it('npm run migration:run applies every migration to an empty database', async () => {
    // On failure this shows why (a build error, a timeout: code null).
    expect({ code: firstMigration.code, err: firstMigration.err.slice(-2000) }).toEqual({ code: 0, err: '' });
    const names = (firstMigration.out.match(/^  \S+$/gm) ?? []).map((l) => l.trim());
    expect(firstMigration.out).toContain(`applied ${names.length} migration(s)`);
    expect(names.length).toBeGreaterThanOrEqual(7);
    expect(((await schemaOf(emptyDb)) as { migrations: string[] }).migrations).toEqual(names);
  });

  it('applied twice, they are a no-op: the second run applies nothing and the schema is unchanged', async () => {
    const before = await schemaOf(emptyDb);
    const again = await run(process.execPath, ['dist/cli/migrate.js'], childEnv({ DATABASE_URL: emptyDb }));
    expect(again).toEqual({ code: 0, out: 'applied 0 migration(s)\n', err: '' });
    expect(await schemaOf(emptyDb)).toEqual(before);
  });
});

describe('configuration errors', () => {
  it('a bad variable stops the real main.js with exit code 78, naming the variable and not its value', async () => {
    const res = await run(process.execPath, ['dist/main.js'], childEnv({ PORT: '99999', HIE_BOOTSTRAP_ADMIN_SECRET: 'too-short-secret' }), 60_000);
    expect(res.code).toBe(78);
    expect(res.err).toBe(
      'Invalid configuration: PORT: must be a port number from 1 to 65535; HIE_BOOTSTRAP_ADMIN_SECRET: must be at least 24 characters\n',
    );
    expect(res.out).toBe('');
    expect(res.err).not.toContain('too-short-secret');
  });
});

describe('reindex and CLI as child processes', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t.close());

  it('npm run reindex (dist/cli/reindex.js) rebuilds the lost index rows of the named types', async () => {
    const created = await t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(hiePatient({ identifier: [{ system: 'urn:reindex', value: 'R-1' }] }));
    expect(created.status).toBe(201);
    await t.db.query(`DELETE FROM search_token WHERE resource_type = 'Patient'`);
    const search = () => t.api.get('/fhir/Patient?identifier=urn:reindex|R-1');
    expect((await search()).body.entry ?? []).toEqual([]);
    const res = await run(process.execPath, ['dist/cli/reindex.js', 'Patient'], childEnv({}));
    expect(res.err).toBe('');
    expect(res.code).toBe(0);
    // The one startup warning this environment earns (no HIE_KEY_ENCRYPTION_KEY, a Nest log line), then the progress.
    expect(res.out.replace(/^.*WARN.*HIE_KEY_ENCRYPTION_KEY is not set.*\n/m, '')).toMatch(/^reindexed 1\/1 \(\d+\/s, at Patient\)\ndone: 1 resources in \d+\.\d s\n$/);
    expect((await search()).body.entry.map((e: { resource: { id: string } }) => e.resource.id)).toEqual([created.body.id]);
    const bad = await run(process.execPath, ['dist/cli/reindex.js', 'Patientt'], childEnv({}));
    expect(bad).toEqual({ code: 1, out: '', err: 'reindex failed: unknown resource type(s): Patientt\n' });
  });

  it('the CLI adds and lists clients on the configured database', async () => {
    const id = `proc-cli-${Date.now().toString(36)}`;
    const added = await run(process.execPath, ['dist/cli/cli.js', 'client', 'add', '--id', id, '--role', 'auditor', '--org', 'org-p', '--scopes', 'system/AuditEvent.rs', '--purposes', 'HOPERAT'], childEnv({}));
    expect(added.code).toBe(0);
    expect(added.out).toMatch(/^[A-Za-z0-9_-]{43}\n$/);
    const listed = await run(process.execPath, ['dist/cli/cli.js', 'client', 'list'], childEnv({}));
    expect(listed.code).toBe(0);
    expect(listed.out.split('\n')).toContain(`${id}\tauditor\torg-p\tenabled\tsystem/AuditEvent.rs\tHOPERAT`);
  });
});

/**
 * One real server on its own embedded PostgreSQL (a temp data dir, free ports), driven over HTTP:
 * the bootstrap admin, clinical traffic with distinctive PHI, then SIGTERM with a request in flight.
 * The tests run in order on that one process; the last reads its whole log.
 */
describe('the real server process (dist/main.js, embedded PostgreSQL)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hie-proc-'));
  const pgDir = join(dir, 'pg');
  const admin = { id: 'proc-bootstrap-admin', secret: 'bootstrap-secret-0123456789abcdef' };
  const phi = { family: 'Zwetschgenbaum', given: 'Philomena', mrn: 'MRN-PHI-771903', birthDate: '1937-11-23', phone: '+41 79 555 01 77' };
  let server: ChildProcess;
  let port: number;
  let pgPort: number;
  let log = '';
  let exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  const call = (method: string, path: string, opts: { token?: string; body?: unknown; form?: Record<string, string> } = {}) =>
    fetch(`http://127.0.0.1:${port}${path}`, {
      method,
      headers: {
        ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
        ...(opts.form ? { 'content-type': 'application/x-www-form-urlencoded' } : opts.body ? { 'content-type': 'application/fhir+json' } : {}),
      },
      body: opts.form ? new URLSearchParams(opts.form).toString() : opts.body ? JSON.stringify(opts.body) : undefined,
    });
  const token = async (clientId: string, secret: string, scope: string): Promise<string> => {
    const res = await call('POST', '/oauth2/token', { form: { grant_type: 'client_credentials', client_id: clientId, client_secret: secret, scope } });
    expect(res.status).toBe(200);
    return ((await res.json()) as { access_token: string }).access_token;
  };

  beforeAll(async () => {
    port = await freePort();
    pgPort = await freePort();
    server = spawn(process.execPath, ['dist/main.js'], {
      cwd: ROOT,
      env: childEnv({
        DATABASE_URL: undefined,
        PORT: String(port),
        EMBEDDED_PG_DIR: pgDir,
        EMBEDDED_PG_PORT: String(pgPort),
        HIE_BOOTSTRAP_ADMIN_CLIENT_ID: admin.id,
        HIE_BOOTSTRAP_ADMIN_SECRET: admin.secret,
      }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    server.stdout!.on('data', (d: Buffer) => (log += d.toString()));
    server.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    exit = new Promise((resolve) => server.once('exit', (code, signal) => resolve({ code, signal })));
    const deadline = Date.now() + 120_000;
    while (!log.includes('FHIR server listening')) {
      if (server.exitCode !== null || Date.now() > deadline) throw new Error(`server did not start:\n${log}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }, 150_000);

  afterAll(async () => {
    if (server.exitCode === null && server.signalCode === null) {
      server.kill('SIGKILL');
      await exit;
    }
    // A killed server leaves its cluster running: stop it by its own pid file before removing the directory.
    const pidFile = join(pgDir, 'postmaster.pid');
    if (existsSync(pidFile)) {
      try {
        process.kill(Number(readFileSync(pidFile, 'utf8').split('\n')[0]), 'SIGTERM');
        await new Promise((r) => setTimeout(r, 1000));
      } catch {
        /* already gone */
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('creates the bootstrap admin from HIE_BOOTSTRAP_ADMIN_*: it gets a token and may register a hospital', async () => {
    // The JSON log is written asynchronously (pino): on a loaded machine its lines may follow the
    // "listening" line by a moment, so wait for them (the assertions below are unchanged).
    for (const deadline = Date.now() + 30_000; !log.includes('created bootstrap admin client') && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 100));
    expect(log).toContain(`"clientId":"${admin.id}"`);
    expect(log).toContain('created bootstrap admin client');
    const adminToken = await token(admin.id, admin.secret, 'system/Organization.cruds');
    expect((await call('PUT', '/fhir/Organization/org-proc', { token: adminToken, body: { resourceType: 'Organization', id: 'org-proc', name: 'Proc hospital' } })).status).toBe(201);
    // Admin role only: no clinical data.
    expect((await call('GET', '/fhir/Patient', { token: adminToken })).status).toBe(403);
  });

  let hospital: string;
  it('serves clinical traffic carrying names, identifiers and query values', async () => {
    const adminToken = await token(admin.id, admin.secret, 'system/Organization.cruds');
    const reg = await fetch(`http://127.0.0.1:${port}/admin/clients`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ clientId: 'proc-hospital', organization: 'org-proc', role: 'hospital', scopes: ['system/*.cruds'], purposes: ['TREAT'] }),
    });
    expect(reg.status).toBe(201);
    const { clientSecret } = (await reg.json()) as { clientSecret: string };
    hospital = await token('proc-hospital', clientSecret, 'system/*.cruds');
    const created = await call('POST', '/fhir/Patient', {
      token: hospital,
      body: {
        resourceType: 'Patient',
        identifier: [{ system: 'http://hospital-a.example.org/mrn', value: phi.mrn }],
        name: [{ family: phi.family, given: [phi.given] }],
        telecom: [{ system: 'phone', value: phi.phone }],
        gender: 'female',
        birthDate: phi.birthDate,
      },
    });
    expect(created.status).toBe(201);
    const id = ((await created.json()) as { id: string }).id;
    const q = `name=${encodeURIComponent(phi.family)}&identifier=${encodeURIComponent(phi.mrn)}&birthdate=${phi.birthDate}`;
    const found = await call('GET', `/fhir/Patient?${q}`, { token: hospital });
    expect(found.status).toBe(200);
    expect(((await found.json()) as { total?: number; entry?: unknown[] }).entry).toHaveLength(1);
    expect((await call('GET', `/fhir/Patient/${id}`, { token: hospital })).status).toBe(200);
    // A refused write echoes PHI in its body: the log must still hold only ids and codes.
    expect((await call('POST', '/fhir/Patient', { token: hospital, body: { resourceType: 'Patient', name: [{ family: phi.family }], birthDate: 'not-a-date' } })).status).toBe(400);
    expect((await call('GET', `/fhir/Patient?telecom=${encodeURIComponent(phi.phone)}&_sort=${phi.given}`, { token: hospital })).status).toBe(400);
  });

  it('connects to its embedded PostgreSQL through the Unix socket, not loopback TCP, as the app role', async () => {
    expect(log).toContain(`the app connects as ${APP_ROLE} through the Unix socket in /tmp`);
    const { superuser } = JSON.parse(readFileSync(join(pgDir, CREDENTIALS_FILE), 'utf8')) as { superuser: { user: string; password: string } };
    const su = new Client({ host: '127.0.0.1', port: pgPort, user: superuser.user, password: superuser.password, database: 'postgres' });
    await su.connect();
    try {
      // client_port is -1 for a Unix-socket connection, the peer's port for TCP.
      const { rows } = await su.query(`SELECT client_port FROM pg_stat_activity WHERE usename = $1 AND backend_type = 'client backend'`, [APP_ROLE]);
      expect(rows.length).toBeGreaterThanOrEqual(1);
      expect([...new Set(rows.map((r: { client_port: number }) => r.client_port))]).toEqual([-1]);
    } finally {
      await su.end();
    }
  });

  it('on SIGTERM finishes the request in flight, refuses new connections, stops its PostgreSQL and exits 0', async () => {
    expect(await portAnswers(pgPort)).toBe(true);
    const body = JSON.stringify({ resourceType: 'Organization', name: 'In flight' });
    const req = http.request({
      host: '127.0.0.1',
      port,
      method: 'POST',
      path: '/fhir/Organization',
      headers: {
        authorization: `Bearer ${hospital}`,
        'content-type': 'application/fhir+json',
        'content-length': Buffer.byteLength(body),
        // The server answers 100 Continue once it holds the request: from then on it is in flight.
        expect: '100-continue',
      },
    });
    const response = new Promise<{ status: number; body: string }>((resolve, reject) => {
      req.on('response', (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, body: text }));
      });
      req.on('error', reject);
    });
    req.flushHeaders();
    await new Promise((resolve) => req.once('continue', resolve));
    server.kill('SIGTERM');
    const deadline = Date.now() + 15_000;
    while ((!log.includes('received SIGTERM, shutting down') || (await portAnswers(port))) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(log).toContain('received SIGTERM, shutting down');
    // No new connections once shutting down …
    expect(await portAnswers(port)).toBe(false);
    // … while the request in flight still gets its body read, its write committed and its answer.
    req.end(body);
    const done = await response;
    expect(done.status).toBe(201);
    expect(JSON.parse(done.body)).toMatchObject({ resourceType: 'Organization', name: 'In flight', meta: { versionId: '1' } });
    expect(await exit).toEqual({ code: 0, signal: null });
    expect(await portAnswers(pgPort)).toBe(false);
    expect(existsSync(join(pgDir, 'postmaster.pid'))).toBe(false);
  }, 60_000);

  it("the server's whole log holds request lines with routes and statuses, and no names, identifiers or query values", () => {
    // Not vacuous: the log is there, one access line per request with the route template and status.
    const lines = log
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg?: string; route?: string; req?: { method?: string }; res?: { status?: number } });
    const access = lines.filter((l) => l.msg?.startsWith('request completed')).map((l) => `${l.req?.method} ${l.route} ${l.res?.status}`);
    expect(access).toEqual(expect.arrayContaining(['POST /fhir/:type 201', 'GET /fhir/:type 200', 'GET /fhir/:type/:id 200', 'POST /fhir/:type 400', 'GET /fhir/:type 400']));
    for (const value of [phi.family, phi.family.toLowerCase(), phi.given, phi.mrn, phi.birthDate, phi.phone, encodeURIComponent(phi.phone), 'not-a-date', 'In flight']) {
      expect({ value, found: log.includes(value) }).toEqual({ value, found: false });
    }
    expect(log).not.toContain(admin.secret);
    expect(log).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}/); // no bearer tokens
  });
});
