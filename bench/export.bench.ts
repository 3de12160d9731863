import { execFileSync, fork } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Bundle } from '@medplum/fhirtypes';
import { Client } from 'pg';
import type { DataSource } from 'typeorm';
import { CREDENTIALS_FILE } from '../src/database/embedded-postgres';
import { SyntheticDataGenerator } from '../src/synthetic/synthetic-data.generator';
import { machineInfo, percentile, SERVER_NODE_FLAGS, ServerProcess, startServerProcess, stopServerProcess, writeResults } from './bench-support';
import type { ClientOutcome } from './ingest-client';

/**
 * npm run bench:export — Bulk Data `$export` memory and throughput (issue 26). The server is the
 * compiled `dist/main.js` in its own process, on a persistent embedded PostgreSQL
 * (BENCH_PG_DIR, default ./data/bench-export-postgres):
 *
 * 1. Load (skipped when the data is there; BENCH_LOAD_ONLY=1 stops after it): BENCH_RESOURCES
 *    (default 200,000) generated resources through the real write path (transaction Bundles over
 *    HTTP, bench/ingest-client in a child process), identity matching off as for any bulk load.
 * 2. Measure, on a freshly started server: its idle RSS (median of 5 s of samples after a warm-up
 *    request), then one system-level `$export` of every type by the loading organization's client
 *    (it sees all of its own data), the server's RSS sampled every 250 ms from /proc until the
 *    manifest is ready: peak minus idle (target ≤ 150 MiB, and flat) and resources per second.
 */
const ROOT = process.cwd();
const TARGET = Number(process.env.BENCH_RESOURCES ?? 200_000);
const PG_DIR = process.env.BENCH_PG_DIR ?? join(ROOT, 'data', 'bench-export-postgres');
const LOAD_CLIENTS = Number(process.env.BENCH_LOAD_CLIENTS ?? 2);
const PATIENTS_PER_BUNDLE = 8;
const BUNDLES_PER_CHUNK = 100;
const NAME = process.env.BENCH_RESULTS_NAME ?? 'export';
const CLIENT_FILE = join(PG_DIR, 'bench-export-client.json');
const SAMPLE_MS = 250;

async function main(): Promise<void> {
  if (!existsSync(join(ROOT, 'dist', 'main.js'))) throw new Error('dist/main.js is missing: npm run build');
  mkdirSync(PG_DIR, { recursive: true });
  const exportDir = mkdtempSync(join(tmpdir(), 'hie-bench-export-'));
  const env = {
    PORT: String(57000 + Math.floor(Math.random() * 1000)),
    EMBEDDED_PG_DIR: PG_DIR,
    EMBEDDED_PG_PORT: process.env.EMBEDDED_PG_PORT ?? '56991',
    RATE_LIMIT_PER_MINUTE: '1000000',
    ACCESS_TOKEN_TTL_SECONDS: '3600',
    IDENTITY_MATCH_ON_WRITE: 'off',
    EXPORT_DIR: exportDir,
    NODE_ENV: 'production',
  };
  let server = await startServerProcess(env);
  try {
    const secret = clientSecret(env);
    const loaded = await load(server, await token(server, secret));
    if (process.env.BENCH_LOAD_ONLY === '1') return;
    // Measure a server that did not just load (its heap and caches would count as "idle").
    await stopServerProcess(server);
    server = await startServerProcess(env);
    const pid = server.child.pid!;
    const bearer = await token(server, secret);
    await fetch(`${server.baseUrl}/fhir/Patient?_count=10`, { headers: { Authorization: `Bearer ${bearer}` } });
    const idleSamples: number[] = [];
    for (let i = 0; i < 5000 / SAMPLE_MS; i++) {
      idleSamples.push(rssMiB(pid));
      await sleep(SAMPLE_MS);
    }
    const idle = percentile([...idleSamples].sort((a, b) => a - b), 50);
    const load1Before = loadavg()[0];
    const started = performance.now();
    const kick = await fetch(`${server.baseUrl}/fhir/$export`, { headers: { Authorization: `Bearer ${bearer}`, Prefer: 'respond-async', Accept: 'application/fhir+json' } });
    if (kick.status !== 202) throw new Error(`kick-off: ${kick.status} ${await kick.text()}`);
    const status = kick.headers.get('content-location')!;
    const curve: { s: number; rssMiB: number }[] = [];
    let manifest: { output: { type: string; count: number }[]; error: unknown[] } | undefined;
    let nextPoll = 0;
    while (!manifest) {
      const now = performance.now();
      curve.push({ s: Math.round((now - started) / 100) / 10, rssMiB: rssMiB(pid) });
      if (now >= nextPoll) {
        nextPoll = now + 1000;
        const res = await fetch(status, { headers: { Authorization: `Bearer ${bearer}` } });
        if (res.status === 200) manifest = (await res.json()) as typeof manifest;
        else if (res.status !== 202) throw new Error(`status: ${res.status} ${await res.text()}`);
      }
      await sleep(SAMPLE_MS);
    }
    const seconds = (performance.now() - started) / 1000;
    const exported = manifest.output.reduce((a, o) => a + o.count, 0);
    const peak = Math.max(...curve.map((c) => c.rssMiB));
    const su = await superuser(env);
    const machine = await machineInfo({ query: async (sql: string) => (await su.query(sql)).rows } as unknown as DataSource);
    const [{ n: stored }] = (await su.query(`SELECT count(*)::int AS n FROM resource WHERE NOT deleted`)).rows;
    await su.end();
    await fetch(status, { method: 'DELETE', headers: { Authorization: `Bearer ${bearer}` } });
    // The curve's shape: the first and second half of the export should peak alike (flat, not growing).
    const half = curve.filter((c) => c.s >= seconds / 2);
    const json = {
      machine: { ...machine, loadAverage1mBefore: round(load1Before), loadAverage1mAfter: round(loadavg()[0]) },
      dataset: { storedResources: stored, target: TARGET, load: loaded },
      export: {
        resources: exported,
        files: manifest.output.length,
        errors: manifest.error.length,
        seconds: round(seconds),
        resourcesPerSecond: Math.round(exported / seconds),
        idleRssMiB: round(idle),
        peakRssMiB: round(peak),
        peakMinusIdleMiB: round(peak - idle),
        firstHalfPeakMiB: round(Math.max(...curve.filter((c) => c.s < seconds / 2).map((c) => c.rssMiB))),
        secondHalfPeakMiB: round(half.length ? Math.max(...half.map((c) => c.rssMiB)) : peak),
        targetMiB: 150,
      },
      curve,
    };
    writeResults(NAME, json, markdown(json));
  } finally {
    await stopServerProcess(server);
    rmSync(exportDir, { recursive: true, force: true });
  }
}

/** Generated patients' transaction Bundles until the target; a stored Patient means its Bundle was stored (resume). */
async function load(server: ServerProcess, bearer: string): Promise<{ loaded: number; seconds: number; resourcesPerSecond: number }> {
  const su = await superuser();
  const stored = new Set<string>((await su.query(`SELECT id FROM resource WHERE resource_type = 'Patient'`)).rows.map((r: { id: string }) => r.id));
  const [{ n: present }] = (await su.query(`SELECT count(*)::int AS n FROM resource WHERE NOT deleted`)).rows;
  await su.end();
  const gen = new SyntheticDataGenerator({ seed: 11, patients: 10_000_000, organizations: 20, practitioners: 200 });
  const info: string[] = [];
  const todo: string[] = [];
  let total = 0;
  let batch: NonNullable<Bundle['entry']> = [];
  let inBatch = 0;
  const flush = () => {
    if (batch.length) todo.push(JSON.stringify({ resourceType: 'Bundle', type: 'transaction', entry: batch }));
    batch = [];
    inBatch = 0;
  };
  for (const b of gen.transactionBundles()) {
    if (total >= TARGET) break;
    const entries = b.entry ?? [];
    total += entries.length;
    const patient = entries.find((e) => e.resource?.resourceType === 'Patient');
    if (!patient) {
      if (!present) info.push(JSON.stringify(b));
      continue;
    }
    if (stored.has(patient.resource!.id!)) continue;
    batch.push(...entries);
    if (++inBatch === PATIENTS_PER_BUNDLE) flush();
  }
  flush();
  if (!todo.length) {
    process.stdout.write(`load: ${present} resources already stored in ${PG_DIR}\n`);
    return { loaded: 0, seconds: 0, resourcesPerSecond: 0 };
  }
  process.stdout.write(`load: ${present} stored; loading up to ${TARGET} with ${LOAD_CLIENTS} clients\n`);
  const started = performance.now();
  let done = 0;
  for (let i = 0; i < todo.length; i += BUNDLES_PER_CHUNK) {
    const chunk = todo.slice(i, i + BUNDLES_PER_CHUNK);
    const outcome = await postChunk(server.baseUrl, bearer, i === 0 ? info : [], chunk);
    if (outcome.errors.length) throw new Error(`load: ${outcome.errors.length} failed, e.g. ${outcome.errors[0]}`);
    done += chunk.reduce((a, b) => a + (JSON.parse(b) as Bundle).entry!.length, 0);
    process.stdout.write(`load: ${present + done} resources, ${Math.round(done / ((performance.now() - started) / 1000))}/s\n`);
  }
  const seconds = (performance.now() - started) / 1000;
  return { loaded: done, seconds: Math.round(seconds), resourcesPerSecond: Math.round(done / seconds) };
}

/** One chunk through bench/ingest-client (its own process, so posting does not load the server's process). */
function postChunk(baseUrl: string, bearer: string, info: string[], patients: string[]): Promise<ClientOutcome> {
  const client = fork(join(__dirname, 'ingest-client.js'), { stdio: 'inherit', serialization: 'advanced' });
  return new Promise((resolve, reject) => {
    client.on('message', (m: 'ready' | ClientOutcome) => {
      if (m === 'ready') client.send('go');
      else resolve(m);
    });
    client.once('exit', (code) => code && reject(new Error(`ingest client exited ${code}`)));
    client.send({ baseUrl, token: bearer, info, patients, clients: LOAD_CLIENTS });
  });
}

/** The bench's hospital client, created once per database (its secret kept beside the cluster). */
function clientSecret(env: Record<string, string>): string {
  if (existsSync(CLIENT_FILE)) return (JSON.parse(readFileSync(CLIENT_FILE, 'utf8')) as { secret: string }).secret;
  const secret = execFileSync(process.execPath, [join(ROOT, 'dist', 'cli', 'cli.js'), 'client', 'add', '--id', 'bench-export', '--role', 'hospital', '--org', 'org-bench', '--scopes', 'system/*.*', '--purposes', 'TREAT'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'ignore'],
  })
    .toString()
    .trim();
  writeFileSync(CLIENT_FILE, JSON.stringify({ secret }), { mode: 0o600 });
  return secret;
}

async function token(server: ServerProcess, secret: string): Promise<string> {
  const res = await fetch(`${server.baseUrl}/oauth2/token`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', client_id: 'bench-export', client_secret: secret, scope: 'system/*.*' }),
  });
  if (res.status !== 200) throw new Error(`token: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { access_token: string }).access_token;
}

async function superuser(env: Record<string, string> = { EMBEDDED_PG_PORT: process.env.EMBEDDED_PG_PORT ?? '56991' }): Promise<Client> {
  const credentials = JSON.parse(readFileSync(join(PG_DIR, CREDENTIALS_FILE), 'utf8'));
  const client = new Client({ connectionString: `postgres://${credentials.superuser.user}:${encodeURIComponent(credentials.superuser.password)}@127.0.0.1:${env.EMBEDDED_PG_PORT}/hie` });
  await client.connect();
  return client;
}

/** Resident set of the server process (VmRSS), MiB. */
function rssMiB(pid: number): number {
  const kb = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
  return kb / 1024;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const round = (n: number) => Math.round(n * 10) / 10;

function markdown(json: {
  machine: Record<string, unknown>;
  dataset: { storedResources: number; load: { loaded: number; seconds: number; resourcesPerSecond: number } };
  export: Record<string, number>;
  curve: { s: number; rssMiB: number }[];
}): string {
  const m = json.machine;
  const e = json.export;
  // About 24 points of the curve, evenly spaced in time.
  const step = Math.max(1, Math.floor(json.curve.length / 24));
  const points = json.curve.filter((_, i) => i % step === 0 || i === json.curve.length - 1);
  return `# bench:export (${m.date})

Machine: ${m.cores} cores (${m.cpu}), ${m.memoryGiB} GiB, Node ${m.node}, ${m.postgres}; load average (1 min) ${m.loadAverage1mBefore} before, ${m.loadAverage1mAfter} after.
Server: \`node ${SERVER_NODE_FLAGS.join(' ')} dist/main.js\` in its own process (as \`npm start\`; NODE_ENV=production, EXPORT_PAGE_SIZE default), embedded PostgreSQL; ${json.dataset.storedResources} stored resources (generated, loaded through the API${json.dataset.load.loaded ? `: ${json.dataset.load.loaded} in ${json.dataset.load.seconds} s, ${json.dataset.load.resourcesPerSecond}/s` : ', earlier run'}).
One system-level \`$export\` (every type) by the loading organization's hospital client; RSS of the server process from /proc every ${SAMPLE_MS} ms.

| exported resources | files | seconds | resources/s | idle RSS MiB | peak RSS MiB | peak − idle MiB (target ≤ ${e.targetMiB}) | peak 1st half | peak 2nd half |
|---:|---:|---:|---:|---:|---:|---:|---:|---:|
| ${e.resources} | ${e.files} | ${e.seconds} | ${e.resourcesPerSecond} | ${e.idleRssMiB} | ${e.peakRssMiB} | ${e.peakMinusIdleMiB} | ${e.firstHalfPeakMiB} | ${e.secondHalfPeakMiB} |

Memory curve (seconds since kick-off: RSS MiB):

| s | ${points.map((p) => p.s).join(' | ')} |
|---|${points.map(() => '---:').join('|')}|
| MiB | ${points.map((p) => Math.round(p.rssMiB)).join(' | ')} |
`;
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:export failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
