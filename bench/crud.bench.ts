import { execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Bundle } from '@medplum/fhirtypes';
import { Client } from 'pg';
import { SyntheticDataGenerator } from '../src/synthetic/synthetic-data.generator';
import { socketDirectory } from '../src/database/embedded-postgres';
import { percentile, postgresCpuMs, processCpuMs, SERVER_NODE_FLAGS, startServerProcess, stopServerProcess, writeResults } from './bench-support';
import type { CrudJob, CrudResult } from './crud-load.worker';
import { CpuProfile, ProfileWindow, stagesMarkdown } from './cpu-profile-stages';

/**
 * npm run bench:crud — the request hot path (issue 11). Starts the compiled server (`dist/main.js`,
 * default configuration except the rate limit, which a single bench client would hit at 20 req/s)
 * on a fresh embedded PostgreSQL, seeds BENCH_PATIENTS generated patient records through the API,
 * restarts it with pg_stat_statements loaded (and `--cpu-prof` with BENCH_CPU_PROF=1), then runs
 * the CRUD mix (50% read by id, 30% Observation?subject=…&code=…, 20% create) at 4, 16 and 64
 * clients for BENCH_SECONDS each (bounded by BENCH_MAX_REQUESTS), and in the same run the ceilings:
 * a bare node:http JSON responder and the raw primary-key SELECT of a read. Server and PostgreSQL
 * CPU per request come from /proc (PostgreSQL: the postmaster, its children, and its reaped children).
 * Before the mix, each kind alone at one client (BENCH_SEQUENTIAL requests after a warm-up): its
 * latency, and per request the WAL writes and flushes (pg_stat_io, object `wal`), the commits
 * (pg_stat_database) and the server's statements by text (pg_stat_statements), issue 23.
 */
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const MAX_REQUESTS = Number(process.env.BENCH_MAX_REQUESTS ?? 50_000);
const PATIENTS = Number(process.env.BENCH_PATIENTS ?? 100);
const CONCURRENCY = (process.env.BENCH_CONCURRENCY ?? '4,16,64').split(',').filter(Boolean).map(Number);
/** Requests per kind of the single-client runs whose WAL flushes, commits and statements are counted. */
const SEQUENTIAL = Number(process.env.BENCH_SEQUENTIAL ?? 300);
/**
 * A backend flushes its statistics to pg_stat_database / pg_stat_io when it goes idle, but at most
 * once a second and otherwise within 10 s (PGSTAT_IDLE_INTERVAL): wait that out around each count.
 */
const STATS_SETTLE_MS = 11_000;
const CPU_PROF = process.env.BENCH_CPU_PROF === '1';
/** The kinds run alone at one client (BENCH_KINDS=read,search to profile those only). */
const KINDS = (process.env.BENCH_KINDS ?? 'read,search,create').split(',').filter((k): k is 'read' | 'search' | 'create' => ['read', 'search', 'create'].includes(k));
const NAME = process.env.BENCH_NAME ?? 'crud';
/** The type a create posts (BENCH_CREATE_TYPE=Patient: a seeded Patient's body, validated against hie-patient; issue 23's profile parsing). */
const CREATE_TYPE = process.env.BENCH_CREATE_TYPE === 'Patient' ? 'Patient' : 'Observation';
/**
 * BENCH_DIRECT=1: the server runs from bench/direct-server.ts, which also serves the same app's
 * pipeline behind a bare node:http handler; after the cells, BENCH_DIRECT_ROUNDS alternating rounds
 * of the read at one client and the mix at 16 clients through the full stack and through that
 * handler (issue 23: what the code costs without a framework).
 */
const DIRECT = process.env.BENCH_DIRECT === '1';
const DIRECT_ROUNDS = Number(process.env.BENCH_DIRECT_ROUNDS ?? 3);
const ROOT = process.cwd();

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'hie-bench-crud-'));
  chmodSync(dir, 0o755);
  const pgDir = join(dir, 'pg');
  const port = 57000 + Math.floor(Math.random() * 1000);
  const pgPort = 58000 + Math.floor(Math.random() * 1000);
  const directPort = port + 1000;
  const env = {
    PORT: String(port),
    ...(DIRECT ? { DIRECT_PORT: String(directPort) } : {}),
    EMBEDDED_PG_DIR: pgDir,
    EMBEDDED_PG_PORT: String(pgPort),
    RATE_LIMIT_PER_MINUTE: '1000000',
    ACCESS_TOKEN_TTL_SECONDS: '3600',
    NODE_ENV: 'production',
  };
  const baseUrl = `http://127.0.0.1:${port}`;
  const profileDir = join(dir, 'profile');
  const entry = DIRECT ? join('dist-bench', 'bench', 'direct-server.js') : undefined;
  let server = await startServerProcess(env, [], entry);
  try {
    const credentials = JSON.parse(readFileSync(join(pgDir, 'hie-credentials.json'), 'utf8'));
    const superUrl = `postgres://${credentials.superuser.user}:${encodeURIComponent(credentials.superuser.password)}@127.0.0.1:${pgPort}/hie`;
    const appUrl = `postgres://${credentials.app.user}:${encodeURIComponent(credentials.app.password)}@127.0.0.1:${pgPort}/hie`;
    const secret = execFileSync(process.execPath, [join(ROOT, 'dist', 'cli', 'cli.js'), 'client', 'add', '--id', 'bench-crud', '--role', 'hospital', '--org', 'org-bench', '--scopes', 'system/*.*', '--purposes', 'TREAT'], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'ignore'],
    })
      .toString()
      .trim();
    let token = await getToken(baseUrl, secret);
    const seedStart = performance.now();
    const seeded = await seed(baseUrl, token);
    process.stdout.write(`seeded ${seeded} resources (${PATIENTS} patients) in ${Math.round((performance.now() - seedStart) / 1000)} s\n`);
    const su = new Client({ connectionString: superUrl });
    await su.connect();
    await su.query(`ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'`);
    await su.query('VACUUM ANALYZE');
    await su.end();
    await stopServerProcess(server);
    process.stdout.write('restarting with pg_stat_statements\n');
    // Restarted: pg_stat_statements loaded; the profile (if asked) covers the measurements, not the seeding.
    server = await startServerProcess(env, CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [], entry);
    token = await getToken(baseUrl, secret);
    const db = new Client({ connectionString: superUrl });
    db.on('error', (err) => process.stderr.write(`bench connection: ${err.message}\n`));
    await db.connect();
    await db.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
    const postmasterPid = Number(readFileSync(join(pgDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    const cpu = (): { server: number; postgres: number } => ({ server: processCpuMs(server.child.pid!), postgres: postgresCpuMs(postmasterPid) });

    const reads: string[] = (await db.query(`SELECT resource_type, id FROM resource WHERE resource_type IN ('Patient', 'Observation') AND NOT deleted ORDER BY md5(id) LIMIT 2000`)).rows.map(
      (r: { resource_type: string; id: string }) => `/fhir/${r.resource_type}/${r.id}`,
    );
    const keys = reads.map((p) => p.split('/').slice(2) as [string, string]);
    const observations: { content: Record<string, unknown> }[] = (await db.query(`SELECT content FROM resource WHERE resource_type = 'Observation' AND NOT deleted ORDER BY md5(id) LIMIT 500`)).rows;
    const searches = observations
      .map(({ content }) => {
        const subject = (content.subject as { reference?: string } | undefined)?.reference;
        const coding = (content.code as { coding?: { system?: string; code?: string }[] } | undefined)?.coding?.[0];
        return subject && coding?.code ? `/fhir/Observation?subject=${encodeURIComponent(subject)}&code=${encodeURIComponent(`${coding.system ?? ''}|${coding.code}`)}` : undefined;
      })
      .filter((s): s is string => !!s);
    const createSource =
      CREATE_TYPE === 'Patient' ? (await db.query(`SELECT content FROM resource WHERE resource_type = 'Patient' AND NOT deleted ORDER BY md5(id) LIMIT 1`)).rows[0] : observations[0];
    const { id: _id, meta: _meta, ...template } = createSource.content;
    const createBody = JSON.stringify(template);
    const createPath = `/fhir/${CREATE_TYPE}`;

    // Ceiling 1: a bare node:http JSON responder in this process (the load runs in a worker thread).
    const bare = createServer((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end('{"status":"ok"}');
    });
    await new Promise<void>((resolve) => bare.listen(0, '127.0.0.1', resolve));
    const bareUrl = `http://127.0.0.1:${(bare.address() as { port: number }).port}`;

    const warm = (job: Partial<CrudJob>) => measure({ baseUrl, token, concurrency: 4, maxRequests: 200, maxSeconds: 5, mode: 'mix', reads, searches, createBody, createPath, ...job });
    await warm({});

    // Sequential singles: a read by id, /healthz (and the database transactions per read).
    const xacts = async (): Promise<number> =>
      Number((await db.query(`SELECT sum(xact_commit + xact_rollback)::bigint AS n FROM pg_stat_database WHERE datname = 'hie'`)).rows[0].n);
    await new Promise((r) => setTimeout(r, 600)); // pg_stat_database is flushed at most once a second
    const x0 = await xacts();
    const readSeq = await measure({ baseUrl, token, mode: 'get', path: reads[0], concurrency: 1, maxRequests: 2000, maxSeconds: Math.min(SECONDS, 5) });
    await new Promise((r) => setTimeout(r, 1200));
    const transactionsPerRead = Math.round(((await xacts()) - x0 - 1) / readSeq.requests * 100) / 100;
    const healthz = await measure({ baseUrl, mode: 'get', path: '/healthz', concurrency: 1, maxRequests: 5000, maxSeconds: Math.min(SECONDS, 5) });

    // Each kind alone at one client, with what it costs PostgreSQL per request (issue 23).
    const sequential: SequentialKind[] = [];
    const serverRole = credentials.app.user as string;
    // Each kind's measured run on the monotonic clock (µs), which V8's profile timestamps use too: the profile per kind.
    const windows: { kind: string; fromUs: number; toUs: number; requests: number }[] = [];
    for (const kind of KINDS) {
      await measure({ baseUrl, token, mode: kind, concurrency: 1, maxRequests: 50, maxSeconds: 30, reads, searches, createBody, createPath });
      await new Promise((r) => setTimeout(r, STATS_SETTLE_MS));
      const before = await counters(db);
      await db.query('SELECT pg_stat_statements_reset()');
      const c0 = cpu();
      const fromUs = Number(process.hrtime.bigint() / 1000n);
      const stats = await measure({ baseUrl, token, mode: kind, concurrency: 1, maxRequests: SEQUENTIAL, maxSeconds: 120, reads, searches, createBody, createPath });
      windows.push({ kind, fromUs, toUs: Number(process.hrtime.bigint() / 1000n), requests: stats.requests });
      const c1 = cpu();
      const rows: { query: string; calls: number }[] = (
        await db.query(
          `SELECT query, calls::int FROM pg_stat_statements
           WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'hie') AND userid = (SELECT oid FROM pg_roles WHERE rolname = $1)
           ORDER BY calls DESC, query`,
          [serverRole],
        )
      ).rows;
      await new Promise((r) => setTimeout(r, STATS_SETTLE_MS));
      const after = await counters(db);
      // Not the server's: the bench's first snapshot, the reset and the statements query (a commit each).
      const per = (n: number): number => round(n / stats.requests, 2);
      const entry: SequentialKind = {
        kind,
        latency: stats,
        walWritesPerRequest: per(after.walWrites - before.walWrites),
        walFlushesPerRequest: per(after.walFsyncs - before.walFsyncs),
        walFlushesByRequestsPerRequest: per(after.walFsyncsClient - before.walFsyncsClient),
        commitsPerRequest: per(after.commits - before.commits - 3),
        rollbacksPerRequest: per(after.rollbacks - before.rollbacks),
        statementsPerRequest: per(rows.reduce((n, r) => n + r.calls, 0)),
        serverCpuMsPerRequest: per(c1.server - c0.server),
        postgresCpuMsPerRequest: per(c1.postgres - c0.postgres),
        statements: rows.map((r) => ({ query: r.query.replace(/\s+/g, ' ').slice(0, 160), calls: r.calls, perRequest: per(r.calls) })),
      };
      process.stdout.write(
        `1 client ${kind}: p50 ${stats.p50} ms; per request ${entry.walFlushesPerRequest} WAL flushes, ${entry.commitsPerRequest} commits, ${entry.statementsPerRequest} statements\n`,
      );
      sequential.push(entry);
    }

    // The guarantee's floor at one client (issue 23): the read's key lookup, then a read's audit
    // record (the last one stored, with a new id and time) appended and committed on a second
    // connection, from a bare pg client over the transport the server uses. A read by id through
    // the server cannot be faster than this plus what /healthz costs the HTTP stack.
    const [stored] = (
      await db.query(
        `SELECT type, array_to_string(subtype, E'\\x1e') AS subtype, action, outcome, array_to_string(agent, E'\\x1e') AS agent,
                array_to_string(patients, E'\\x1e') AS patients, array_to_string(entities, E'\\x1e') AS entities, purpose, content::text AS content
         FROM audit_event WHERE 'read' = ANY (subtype) AND outcome = '0' ORDER BY seq DESC LIMIT 1`,
      )
    ).rows;
    const auditRecord = ['type', 'subtype', 'action', 'outcome', 'agent', 'patients', 'entities', 'purpose', 'content'].map((c) => [stored[c]]);
    const socketDir = socketDirectory(pgPort);
    const floorUrl = socketDir ? `${appUrl}?host=${encodeURIComponent(socketDir)}` : appUrl;
    const floorJob = { baseUrl, mode: 'floor' as const, databaseUrl: floorUrl, keys, auditRecord, concurrency: 1, maxSeconds: 120 };
    await measure({ ...floorJob, maxRequests: 50 });
    const floor = await measure({ ...floorJob, maxRequests: SEQUENTIAL });
    process.stdout.write(`1 client floor (key lookup + audit append and commit, bare pg): p50 ${floor.p50} ms\n`);

    // The transport the server uses to PostgreSQL, measured alone: the read's key lookup from this
    // thread over loopback TCP and over the cluster's Unix socket, alternating, wall and this
    // process's CPU per round trip (the server itself is another process; the load thread is idle).
    const transport = await measureTransport(appUrl, floorUrl, keys);
    process.stdout.write(`key lookup per round trip, tcp / unix: wall ${transport.tcp.wallUs} / ${transport.unix.wallUs} µs, client CPU ${transport.tcp.cpuUs} / ${transport.unix.cpuUs} µs\n`);

    const cells = [];
    let statements: { query: string; calls: number; perRequest: number; meanMs: number }[] = [];
    for (const concurrency of CONCURRENCY) {
      if (concurrency === 16 || (!CONCURRENCY.includes(16) && concurrency === CONCURRENCY[0])) await db.query('SELECT pg_stat_statements_reset()');
      const c0 = cpu();
      const mix = await measure({ baseUrl, token, mode: 'mix', concurrency, maxRequests: MAX_REQUESTS, maxSeconds: SECONDS, reads, searches, createBody, createPath });
      const c1 = cpu();
      if (concurrency === 16 || (!CONCURRENCY.includes(16) && concurrency === CONCURRENCY[0])) {
        const rows = (await db.query(`SELECT query, calls::int, mean_exec_time FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'hie') ORDER BY calls DESC LIMIT 25`)).rows;
        statements = rows
          .filter((r: { query: string }) => !/pg_stat_statements/.test(r.query))
          .map((r: { query: string; calls: number; mean_exec_time: number }) => ({
            query: r.query.replace(/\s+/g, ' ').slice(0, 160),
            calls: r.calls,
            perRequest: Math.round((r.calls / mix.requests) * 100) / 100,
            meanMs: Math.round(r.mean_exec_time * 1000) / 1000,
          }));
      }
      const bareCell = await measure({ baseUrl: bareUrl, mode: 'get', path: '/', concurrency, maxRequests: MAX_REQUESTS * 4, maxSeconds: SECONDS });
      const pk = await measure({ baseUrl, mode: 'pk', databaseUrl: appUrl, keys, concurrency: Math.min(concurrency, 16), maxRequests: MAX_REQUESTS * 4, maxSeconds: SECONDS });
      const cell = {
        concurrency,
        mix,
        serverCpuMsPerRequest: round((c1.server - c0.server) / mix.requests, 2),
        postgresCpuMsPerRequest: round((c1.postgres - c0.postgres) / mix.requests, 2),
        bare: bareCell,
        pk,
        ratioToBare: round(mix.rps / bareCell.rps, 3),
        ratioToPk: round(mix.rps / pk.rps, 3),
        loadAverage: loadavg().map((n) => round(n, 2)),
      };
      process.stdout.write(`c${concurrency}: ${mix.rps} req/s (${mix.errors} errors); bare ${bareCell.rps}/s; pk ${pk.rps}/s; load ${cell.loadAverage.join(' ')}\n`);
      cells.push(cell);
    }
    bare.close();

    // The same app with and without the HTTP framework in front of its pipeline, alternating.
    const direct: DirectRound[] = [];
    if (DIRECT) {
      const lanes = [
        { path: 'stack' as const, url: baseUrl },
        { path: 'direct' as const, url: `http://127.0.0.1:${directPort}` },
      ];
      // Every read's record is stored, through either path: the records a read run added, beside its reads.
      const auditRecords = async (): Promise<number> => Number((await db.query('SELECT max(seq) AS n FROM audit_event')).rows[0].n ?? 0);
      for (let r = 1; r <= DIRECT_ROUNDS; r++) {
        for (const lane of r % 2 ? lanes : [...lanes].reverse()) {
          await measure({ baseUrl: lane.url, token, mode: 'get', path: reads[0], concurrency: 1, maxRequests: 200, maxSeconds: 5 });
          const a0 = await auditRecords();
          const c0 = cpu();
          const fromUs = Number(process.hrtime.bigint() / 1000n);
          const read = await measure({ baseUrl: lane.url, token, mode: 'get', path: reads[0], concurrency: 1, maxRequests: 2000, maxSeconds: Math.min(SECONDS, 5) });
          // With BENCH_CPU_PROF=1 the profile's stages per read, through each path.
          windows.push({ kind: `read, ${lane.path}, round ${r}`, fromUs, toUs: Number(process.hrtime.bigint() / 1000n), requests: read.requests });
          const c1 = cpu();
          const readAuditRecords = (await auditRecords()) - a0;
          const mix = await measure({ baseUrl: lane.url, token, mode: 'mix', concurrency: 16, maxRequests: MAX_REQUESTS, maxSeconds: SECONDS, reads, searches, createBody, createPath });
          const c2 = cpu();
          direct.push({
            round: r,
            path: lane.path,
            read,
            readServerCpuMs: round((c1.server - c0.server) / read.requests, 3),
            readPostgresCpuMs: round((c1.postgres - c0.postgres) / read.requests, 3),
            readAuditRecords,
            mix,
            mixServerCpuMs: round((c2.server - c1.server) / mix.requests, 2),
            mixPostgresCpuMs: round((c2.postgres - c1.postgres) / mix.requests, 2),
            loadAverage: loadavg().map((n) => round(n, 2)),
          });
          process.stdout.write(`direct round ${r} ${lane.path}: read p50 ${read.p50} ms (${read.errors} errors), mix c16 ${mix.rps} req/s (${mix.errors} errors)\n`);
        }
      }
    }
    const [{ version }] = (await db.query('SELECT version()')).rows;
    await db.end();
    const json = {
      machine: {
        date: new Date().toISOString(),
        cores: cpus().length,
        cpu: cpus()[0]?.model,
        memoryGiB: Math.round(totalmem() / 2 ** 30),
        node: process.version,
        postgres: String(version).split(' on ')[0],
        loadAverageAtEnd: loadavg().map((n) => round(n, 2)),
      },
      dataset: { patients: PATIENTS, resources: seeded },
      createType: CREATE_TYPE,
      auditReadCommit: process.env.AUDIT_READ_COMMIT ?? 'durable',
      seconds: SECONDS,
      maxRequests: MAX_REQUESTS,
      readSequential: readSeq,
      healthzSequential: healthz,
      floorSequential: floor,
      transport,
      transactionsPerRead,
      sequential,
      profileWindows: windows,
      cells,
      statementsPerRequestAt16: statements,
      direct,
    };
    await stopServerProcess(server);
    let profile = '';
    if (CPU_PROF) {
      const file = readdirSync(profileDir).find((f) => f.endsWith('.cpuprofile'));
      if (file) profile = summarizeProfile(JSON.parse(readFileSync(join(profileDir, file), 'utf8')), windows);
      // The raw profile too, for a flame graph (BENCH_PROFILE_OUT).
      if (file && process.env.BENCH_PROFILE_OUT) writeFileSync(process.env.BENCH_PROFILE_OUT, readFileSync(join(profileDir, file)));
      writeFileSync(join(ROOT, 'bench', 'results', `${NAME}-profile.md`), profile);
    }
    writeResults(NAME, json, markdown(json));
  } catch (err) {
    process.stderr.write(`bench:crud failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exitCode = 1;
  } finally {
    if (server.child.exitCode === null) await stopServerProcess(server);
    rmSync(dir, { recursive: true, force: true });
  }
}

async function getToken(baseUrl: string, secret: string): Promise<string> {
  const res = await fetch(`${baseUrl}/oauth2/token`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', client_id: 'bench-crud', client_secret: secret, scope: 'system/*.*' }),
  });
  if (res.status !== 200) throw new Error(`token: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { access_token: string }).access_token;
}

async function seed(baseUrl: string, token: string): Promise<number> {
  const gen = new SyntheticDataGenerator({ seed: 7, patients: PATIENTS, organizations: 5, practitioners: 20 });
  let n = 0;
  for (const b of gen.transactionBundles()) {
    const res = await fetch(`${baseUrl}/fhir`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/fhir+json' },
      body: JSON.stringify(b as Bundle),
    });
    if (res.status !== 200) throw new Error(`seed: ${res.status} ${(await res.text()).slice(0, 300)}`);
    n += b.entry?.length ?? 0;
  }
  return n;
}

/** One lane of a BENCH_DIRECT round: the full HTTP stack or the bare handler in front of the same pipeline. */
interface DirectRound {
  round: number;
  path: 'stack' | 'direct';
  read: Stats;
  readServerCpuMs: number;
  readPostgresCpuMs: number;
  /** Audit records stored during the read run (its requests and nothing else run then). */
  readAuditRecords: number;
  mix: Stats;
  mixServerCpuMs: number;
  mixPostgresCpuMs: number;
  loadAverage: number[];
}

/** utime + stime of a process (all its threads), in ms. */
interface SequentialKind {
  kind: 'read' | 'search' | 'create';
  latency: Stats;
  walWritesPerRequest: number;
  walFlushesPerRequest: number;
  /** Flushes a server connection made itself (backend type `client backend`): a commit waiting for its flush. The rest are the WAL writer's, in the background. */
  walFlushesByRequestsPerRequest: number;
  commitsPerRequest: number;
  rollbacksPerRequest: number;
  statementsPerRequest: number;
  serverCpuMsPerRequest: number;
  postgresCpuMsPerRequest: number;
  statements: { query: string; calls: number; perRequest: number }[];
}

/** Cluster-wide WAL writes and flushes (every backend type: the walwriter's too) and the database's commits, in one statement. */
async function counters(db: Client): Promise<{ commits: number; rollbacks: number; walWrites: number; walFsyncs: number; walFsyncsClient: number }> {
  const [r] = (
    await db.query(
      `SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = 'hie')::bigint AS commits,
              (SELECT xact_rollback FROM pg_stat_database WHERE datname = 'hie')::bigint AS rollbacks,
              (SELECT coalesce(sum(writes), 0) FROM pg_stat_io WHERE object = 'wal')::bigint AS wal_writes,
              (SELECT coalesce(sum(fsyncs), 0) FROM pg_stat_io WHERE object = 'wal')::bigint AS wal_fsyncs,
              (SELECT coalesce(sum(fsyncs), 0) FROM pg_stat_io WHERE object = 'wal' AND backend_type = 'client backend')::bigint AS wal_fsyncs_client`,
    )
  ).rows as { commits: string; rollbacks: string; wal_writes: string; wal_fsyncs: string; wal_fsyncs_client: string }[];
  return {
    commits: Number(r.commits),
    rollbacks: Number(r.rollbacks),
    walWrites: Number(r.wal_writes),
    walFsyncs: Number(r.wal_fsyncs),
    walFsyncsClient: Number(r.wal_fsyncs_client),
  };
}

interface KindStats {
  requests: number;
  p50: number;
  p95: number;
  p99: number;
}
interface Stats extends KindStats {
  errors: number;
  rps: number;
  kinds: Record<string, KindStats>;
}

async function measure(job: CrudJob): Promise<Stats> {
  const result = await new Promise<CrudResult>((resolve, reject) => {
    const worker = new Worker(join(__dirname, 'crud-load.worker.js'), { workerData: job });
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  if (result.errors.length) process.stderr.write(`${job.mode} c${job.concurrency}: ${result.errors.length} errors, e.g. ${result.errors[0]}\n`);
  const stats = (list: number[]): KindStats => {
    const sorted = [...list].sort((a, b) => a - b);
    return { requests: sorted.length, p50: round(percentile(sorted, 50), 2), p95: round(percentile(sorted, 95), 2), p99: round(percentile(sorted, 99), 2) };
  };
  const all = Object.values(result.latencies).flat();
  return {
    ...stats(all),
    errors: result.errors.length,
    rps: round(all.length / result.seconds, 0),
    kinds: Object.fromEntries(Object.entries(result.latencies).map(([k, v]) => [k, stats(v)])),
  };
}

const TRANSPORT_ROUNDS = 4;
const TRANSPORT_QUERIES = 2000;

interface Transport {
  tcp: { wallUs: number; cpuUs: number };
  unix: { host?: string; wallUs: number; cpuUs: number };
}

/** Sequential key lookups over each transport, alternating rounds; the median round of each. */
async function measureTransport(tcpUrl: string, socketUrl: string, keys: [string, string][]): Promise<Transport> {
  const lanes = [{ name: 'tcp', url: tcpUrl }, ...(socketUrl !== tcpUrl ? [{ name: 'unix', url: socketUrl }] : [])];
  const clients = await Promise.all(lanes.map(async (l) => {
    const c = new Client({ connectionString: l.url });
    await c.connect();
    return c;
  }));
  const samples: Record<string, { wallUs: number; cpuUs: number }[]> = { tcp: [], unix: [] };
  try {
    const lookup = (c: Client, i: number) => c.query({ name: 'pk', text: 'SELECT content FROM resource WHERE resource_type = $1 AND id = $2', values: keys[i % keys.length] });
    for (let round = 0; round < TRANSPORT_ROUNDS; round++) {
      for (let l = 0; l < lanes.length; l++) {
        for (let i = 0; i < 200; i++) await lookup(clients[l], i);
        const cpu0 = process.cpuUsage();
        const t0 = performance.now();
        for (let i = 0; i < TRANSPORT_QUERIES; i++) await lookup(clients[l], i);
        const cpu = process.cpuUsage(cpu0);
        samples[lanes[l].name].push({ wallUs: ((performance.now() - t0) * 1000) / TRANSPORT_QUERIES, cpuUs: (cpu.user + cpu.system) / TRANSPORT_QUERIES });
      }
    }
  } finally {
    await Promise.all(clients.map((c) => c.end()));
  }
  const median = (list: { wallUs: number; cpuUs: number }[]) => ({
    wallUs: round(percentile(list.map((x) => x.wallUs).sort((a, b) => a - b), 50), 1),
    cpuUs: round(percentile(list.map((x) => x.cpuUs).sort((a, b) => a - b), 50), 1),
  });
  return { tcp: median(samples.tcp), unix: samples.unix.length ? { host: new URL(socketUrl).searchParams.get('host')!, ...median(samples.unix) } : { wallUs: 0, cpuUs: 0 } };
}

function round(n: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/** Self time by function and by origin (package, node internals, our code) from a .cpuprofile. */
function summarizeProfile(profile: CpuProfile, windows: ProfileWindow[]): string {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const byFunction = new Map<string, number>();
  const byOrigin = new Map<string, number>();
  for (const [id, us] of self) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    const origin = originOf(url, functionName);
    const fn = `${functionName || '(anonymous)'} ${url ? `${url.replace(/^.*node_modules\//, '').replace(ROOT, '')}:${lineNumber + 1}` : ''}`;
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + us);
    byOrigin.set(origin, (byOrigin.get(origin) ?? 0) + us);
  }
  const top = (m: Map<string, number>, n: number) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, us]) => `| ${k.replace(/\|/g, '\\|')} | ${(us / 1000).toFixed(0)} | ${((100 * us) / total).toFixed(1)} |`)
      .join('\n');
  return `# CPU profile of the server under bench:crud (${new Date().toISOString()})

Self time over the whole measured part of the run (sequential reads, healthz, the mix at ${CONCURRENCY.join('/')} clients),
${(total / 1e6).toFixed(1)} s sampled. Load average at the end: ${loadavg().map((n) => n.toFixed(2)).join(' / ')}.

## By origin

| origin | self ms | % |
|---|---|---|
${top(byOrigin, 30)}

## By function (top 40)

| function | self ms | % |
|---|---|---|
${top(byFunction, 40)}

# By stage, each kind alone at one client (bench/cpu-profile-stages.ts)

${stagesMarkdown(profile, windows)}`;
}

function originOf(url: string, functionName: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1];
  if (url.startsWith('node:')) return url.split('/').slice(0, 2).join('/');
  if (url.includes('/dist/')) return `server: ${url.replace(/^.*\/dist\//, '').split('/').slice(0, 2).join('/')}`;
  return url;
}

function markdown(json: {
  machine: Record<string, unknown> & { loadAverageAtEnd: number[] };
  dataset: { patients: number; resources: number };
  auditReadCommit: string;
  readSequential: Stats;
  healthzSequential: Stats;
  floorSequential: Stats;
  transport: Transport;
  transactionsPerRead: number;
  sequential: SequentialKind[];
  cells: {
    concurrency: number;
    mix: Stats;
    serverCpuMsPerRequest: number;
    postgresCpuMsPerRequest: number;
    bare: Stats;
    pk: Stats;
    ratioToBare: number;
    ratioToPk: number;
    loadAverage: number[];
  }[];
  statementsPerRequestAt16: { query: string; calls: number; perRequest: number; meanMs: number }[];
  direct: DirectRound[];
}): string {
  const m = json.machine;
  const k = (s: Stats, kind: string) => (s.kinds[kind] ? `${s.kinds[kind].p50} / ${s.kinds[kind].p95} / ${s.kinds[kind].p99}` : '–');
  return `# CRUD mix benchmark (${m.date})

Machine: ${m.cores} cores (${m.cpu}), ${m.memoryGiB} GiB, Node ${m.node}, ${m.postgres}. Load average at the end: ${m.loadAverageAtEnd.join(' / ')} (1/5/15 min; 2 cores: anything above ~2 means other work competed, so compare ratios within this run).
Server: \`node ${SERVER_NODE_FLAGS.join(' ')} dist/main.js\` in its own process (as \`npm start\`), default configuration except RATE_LIMIT_PER_MINUTE=1000000 and NODE_ENV=production (AUDIT_READ_COMMIT=${json.auditReadCommit}), access log to /dev/null; fresh embedded PostgreSQL; ${json.dataset.resources} resources (${json.dataset.patients} generated patients) seeded through the API.
Load from a worker thread of the bench process (the same cores), at most ${SECONDS} s or ${MAX_REQUESTS} requests per cell; latency send to last byte, ms.

Sequential (1 client): read by id p50 ${json.readSequential.p50} ms (p99 ${json.readSequential.p99}), \`GET /healthz\` p50 ${json.healthzSequential.p50} ms (p99 ${json.healthzSequential.p99}); database transactions per read by id: ${json.transactionsPerRead}.

The audit guarantee's floor at one client (no HTTP, auth or framework: a bare \`pg\` client sends the read's key lookup, then a read's audit record through \`audit_append\` on a second connection, committed with its WAL flush; ${json.floorSequential.requests} after 50 of warm-up): p50 ${json.floorSequential.p50} ms (p95 ${json.floorSequential.p95}). A read by id through the server costs at least this plus \`/healthz\`'s p50 (${round(json.floorSequential.p50 + json.healthzSequential.p50, 2)} ms here).

The read's key lookup alone from a bare \`pg\` client, per round trip (${TRANSPORT_ROUNDS} × ${TRANSPORT_QUERIES} alternating, medians): loopback TCP ${json.transport.tcp.wallUs} µs wall, ${json.transport.tcp.cpuUs} µs client CPU; ${json.transport.unix.host === undefined ? 'no Unix socket' : `Unix socket ${json.transport.unix.wallUs} µs wall, ${json.transport.unix.cpuUs} µs client CPU`}.

## Each kind alone, 1 client (${SEQUENTIAL} requests after 50 of warm-up; counts per request)

| kind | p50 / p95 / p99 ms | WAL flushes | of them by the server's connections | WAL writes | commits | rollbacks | statements | server CPU ms | PostgreSQL CPU ms |
|---|---|---|---|---|---|---|---|---|---|
${json.sequential
  .map(
    (s) =>
      `| ${s.kind} | ${s.latency.p50} / ${s.latency.p95} / ${s.latency.p99} | ${s.walFlushesPerRequest} | ${s.walFlushesByRequestsPerRequest} | ${s.walWritesPerRequest} | ${s.commitsPerRequest} | ${s.rollbacksPerRequest} | ${s.statementsPerRequest} | ${s.serverCpuMsPerRequest} | ${s.postgresCpuMsPerRequest} |`,
  )
  .join('\n')}

WAL flushes and writes: \`pg_stat_io\` (object \`wal\`, all backend types, the walwriter's included; \"by the server's connections\": backend type \`client backend\`, i.e. commits that waited for their own flush); commits: \`pg_stat_database.xact_commit\` (every committed transaction, implicit single-statement ones included). Statements of the server's role per request (\`pg_stat_statements\`, BEGIN/COMMIT included):

${json.sequential
  .map((s) => `**${s.kind}**\n\n| statement | per request |\n|---|---|\n${s.statements.map((q) => `| \`${q.query.replace(/\|/g, '\\|')}\` | ${q.perRequest} |`).join('\n')}`)
  .join('\n\n')}

## The mix

| clients | mix req/s | errors | read p50/p95/p99 | search p50/p95/p99 | create p50/p95/p99 | server CPU ms/req | PostgreSQL CPU ms/req | bare node:http req/s | ratio | raw PK SELECT/s | ratio | load avg |
|---|---|---|---|---|---|---|---|---|---|---|---|---|
${json.cells
  .map(
    (c) =>
      `| ${c.concurrency} | ${c.mix.rps} | ${c.mix.errors} | ${k(c.mix, 'read')} | ${k(c.mix, 'search')} | ${k(c.mix, 'create')} | ${c.serverCpuMsPerRequest} | ${c.postgresCpuMsPerRequest} | ${c.bare.rps} | ${c.ratioToBare} | ${c.pk.rps} | ${c.ratioToPk} | ${c.loadAverage.join(' ')} |`,
  )
  .join('\n')}

CPU per request is all the process's (server) or cluster's (PostgreSQL) CPU during the cell divided by its requests. The raw PK SELECT uses min(clients, 16) connections.

## Statements per request of the mix at 16 clients (pg_stat_statements)

| statement | calls | per request | mean ms |
|---|---|---|---|
${json.statementsPerRequestAt16.map((s) => `| \`${s.query.replace(/\|/g, '\\|')}\` | ${s.calls} | ${s.perRequest} | ${s.meanMs} |`).join('\n')}
${json.direct.length ? directMarkdown(json.direct) : ''}`;
}

function directMarkdown(rounds: DirectRound[]): string {
  const median = (list: number[]) => percentile([...list].sort((a, b) => a - b), 50);
  const of = (path: DirectRound['path'], pick: (r: DirectRound) => number) => round(median(rounds.filter((r) => r.path === path).map(pick)), 3);
  return `
## The pipeline with and without the HTTP framework (BENCH_DIRECT=1)

The same process and app: \`stack\` is the full server (Express, Nest's router, guards and interceptors, helmet, compression, request log, rate limit); \`direct\` is bench/direct-server.ts's bare \`node:http\` handler calling the same \`FhirPipeline\` after verifying the same token (authorization, consent, execution and the audit record committed before the answer). Alternating rounds; the read is 2,000 sequential reads of one resource after 200 of warm-up, the mix 16 clients for ${SECONDS} s.

| round | path | read p50 / p99 ms | reads / audit records stored | server CPU ms per read | PostgreSQL CPU ms per read | mix c16 req/s | errors | server CPU ms per mix request | PostgreSQL CPU ms per mix request | load avg |
|---|---|---|---|---|---|---|---|---|---|---|
${rounds
  .map(
    (r) =>
      `| ${r.round} | ${r.path} | ${r.read.p50} / ${r.read.p99} | ${r.read.requests} / ${r.readAuditRecords} | ${r.readServerCpuMs} | ${r.readPostgresCpuMs} | ${r.mix.rps} | ${r.read.errors + r.mix.errors} | ${r.mixServerCpuMs} | ${r.mixPostgresCpuMs} | ${r.loadAverage.join(' ')} |`,
  )
  .join('\n')}
| **median** | stack | ${of('stack', (r) => r.read.p50)} | | ${of('stack', (r) => r.readServerCpuMs)} | ${of('stack', (r) => r.readPostgresCpuMs)} | ${of('stack', (r) => r.mix.rps)} | | ${of('stack', (r) => r.mixServerCpuMs)} | ${of('stack', (r) => r.mixPostgresCpuMs)} | |
| **median** | direct | ${of('direct', (r) => r.read.p50)} | | ${of('direct', (r) => r.readServerCpuMs)} | ${of('direct', (r) => r.readPostgresCpuMs)} | ${of('direct', (r) => r.mix.rps)} | | ${of('direct', (r) => r.mixServerCpuMs)} | ${of('direct', (r) => r.mixPostgresCpuMs)} | |
`;
}

if (!existsSync(join(ROOT, 'dist', 'main.js'))) {
  process.stderr.write('bench:crud needs the compiled server: npm run build\n');
  process.exit(1);
}
mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
main().catch((err: unknown) => {
  process.stderr.write(`bench:crud failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
