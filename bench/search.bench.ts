import { fork } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Bundle } from '@medplum/fhirtypes';
import { Client } from 'pg';
import { CREDENTIALS_FILE } from '../src/database/embedded-postgres';
import { SyntheticDataGenerator } from '../src/synthetic/synthetic-data.generator';
import type { ClientOutcome } from './ingest-client';
import { BenchServer, machineInfo, percentile, startBenchServer, writeResults } from './bench-support';

/**
 * npm run bench:search — loads BENCH_RESOURCES (default 1,000,000) generated resources through the
 * real write path (transaction Bundles over HTTP, full validation and indexing) into a persistent
 * embedded PostgreSQL (BENCH_PG_DIR, default ./data/bench-postgres) once — reruns find the data and
 * skip the load, an interrupted load resumes — then measures a fixed query mix at concurrency 1 and
 * 8 and records the EXPLAIN (ANALYZE, BUFFERS) plan of each query's SQL as the server ran it.
 */
const TARGET = Number(process.env.BENCH_RESOURCES ?? 1_000_000);
const PG_DIR = process.env.BENCH_PG_DIR ?? join(process.cwd(), 'data', 'bench-postgres');
const LOAD_CLIENTS = Number(process.env.BENCH_LOAD_CLIENTS ?? 4);
const PATIENTS_PER_BUNDLE = Number(process.env.BENCH_PATIENTS_PER_BUNDLE ?? 8);
/** Bundles handed to one client process at a time: the JSON text of 1M resources never sits in memory at once. */
const BUNDLES_PER_CHUNK = 200;
/** Results go to bench/results/<name>.md|json and <name>-plans.md: a run at another size keeps the 1M files. */
const RESULTS_NAME = process.env.BENCH_RESULTS_NAME ?? 'search';
const SEED = 7;
const MAX_SECONDS = Number(process.env.BENCH_SECONDS ?? 15);
const ONLY = process.env.BENCH_ONLY ? new Set(process.env.BENCH_ONLY.split(',')) : undefined;

interface Query {
  name: string;
  path: string;
  target?: string;
  /** Follow `next` this many times first and measure that page (keyset cursor). */
  page?: number;
}

async function main(): Promise<void> {
  let server = await startBenchServer({ persistentPgDir: PG_DIR });
  const loadReport = await load(server);
  // After a load (this run's or an interrupted earlier one): visibility map for index-only scans, statistics.
  const [{ n: unvacuumed }] = await server.db.query(`SELECT COALESCE(max(n_ins_since_vacuum), 0)::int AS n FROM pg_stat_user_tables`);
  const vacuum = loadReport.loaded > 0 || unvacuumed > 10_000;
  if (vacuum) {
    process.stdout.write('VACUUM ANALYZE …\n');
    await asSuperuser('VACUUM ANALYZE');
  }
  if (process.env.BENCH_LOAD_ONLY === '1') {
    // Load now, measure later on a quiet machine (a rerun finds the data).
    await server.close();
    return;
  }
  if ((await configure(server)) || vacuum) {
    // Query from a fresh start (settings applied), as a rerun would.
    await server.close();
    server = await startBenchServer({ persistentPgDir: PG_DIR });
  }
  const dataset: { resource_type: string; n: number }[] = await server.db.query(
    `SELECT resource_type, count(*)::int AS n FROM resource WHERE NOT deleted GROUP BY 1 ORDER BY 2 DESC`,
  );
  const resources = dataset.reduce((a, r) => a + r.n, 0);
  const [{ size }] = await server.db.query(`SELECT pg_database_size(current_database())::bigint AS size`);
  const settings: { name: string; setting: string; unit: string | null }[] = await server.db.query(
    `SELECT name, current_setting(name) AS setting, NULL AS unit FROM pg_settings WHERE name IN ('shared_buffers', 'work_mem', 'effective_cache_size', 'random_page_cost', 'jit')`,
  );
  process.stdout.write(`dataset: ${resources} resources, ${Math.round(Number(size) / 2 ** 20)} MiB\n`);

  const queries = await chooseQueries(server);
  const consents = await ensureConsents(server, queries[0].path.split('/').pop()!);
  // The loading organization's own data short-circuits the consent predicate (own data is always
  // visible); another organization's reads evaluate it for every candidate row: the consent-on column.
  const otherToken = await server.tokenFor('org-bench-other');
  const results = [];
  for (const q of queries) {
    if (ONLY && !ONLY.has(q.name)) continue;
    const url = await resolveUrl(server, q);
    const matches = q.path.includes('?') ? await matchCount(server, q.path) : 1;
    const plans = await explain(server, url);
    // Warm-up (plan cache, buffers), not measured.
    await measure(url, server.token, 1, 5, 5);
    const c1 = await measure(url, server.token, 1, 300, MAX_SECONDS);
    const c8 = await measure(url, server.token, 8, 800, MAX_SECONDS);
    const otherUrl = await resolveUrl(server, q, otherToken);
    const consentMatches = q.path.includes('?') ? await matchCount(server, q.path, otherToken) : 1;
    const consentPlans = await explain(server, otherUrl, otherToken);
    await measure(otherUrl, otherToken, 1, 5, 5);
    const consent = { matches: consentMatches, c1: await measure(otherUrl, otherToken, 1, 300, MAX_SECONDS), c8: await measure(otherUrl, otherToken, 8, 800, MAX_SECONDS) };
    // The SQL's own time (EXPLAIN ANALYZE, every statement of the request): what the index walk changed.
    const sqlMs = Math.round(plans.reduce((a, p) => a + Number(/Execution Time: ([\d.]+) ms/.exec(p)?.[1] ?? 0), 0) * 10) / 10;
    const row = { ...q, url: url.slice(server.baseUrl.length), matches, sqlMs, c1, c8, consent, plans, consentPlans };
    process.stdout.write(`${q.name}: ${matches} matches; c1 p50 ${c1.p50} p95 ${c1.p95} p99 ${c1.p99} ms, ${c1.rps}/s; c8 p50 ${c8.p50} p99 ${c8.p99} ms, ${c8.rps}/s; consent on: ${consentMatches} matches, c1 p50 ${consent.c1.p50}, c8 p50 ${consent.c8.p50}\n`);
    results.push(row);
  }
  const machine = await machineInfo(server.db);
  const mix = {
    c1p50: mixPercentile(results.map((q) => q.c1.samples ?? []), 50),
    c8p99: mixPercentile(results.map((q) => q.c8.samples ?? []), 99),
    consentC1p50: mixPercentile(results.map((q) => q.consent.c1.samples ?? []), 50),
    consentC8p99: mixPercentile(results.map((q) => q.consent.c8.samples ?? []), 99),
  };
  const strip = ({ samples: _samples, ...stats }: Stats): Stats => stats;
  const json = {
    machine,
    settings,
    dataset: { resources, byType: dataset, databaseMiB: Math.round(Number(size) / 2 ** 20), consents },
    load: loadReport,
    loads: loadRuns(),
    mix,
    queries: results.map(({ plans: _plans, consentPlans: _consentPlans, ...q }) => ({ ...q, c1: strip(q.c1), c8: strip(q.c8), consent: { ...q.consent, c1: strip(q.consent.c1), c8: strip(q.consent.c8) } })),
  };
  writeResults(RESULTS_NAME, json, markdown(json));
  writeFileSync(
    join(process.cwd(), 'bench', 'results', `${RESULTS_NAME}-plans.md`),
    `# EXPLAIN (ANALYZE, BUFFERS) of the bench queries (${machine.date}, ${resources} resources)\n\n${results
      .map(
        (q) =>
          `## ${q.name}: \`${q.url.replace(/_cursor=[^&]+/, '_cursor=…')}\` (${q.matches} matches)\n\n${q.plans.map((p) => `\`\`\`\n${p}\n\`\`\``).join('\n\n')}` +
          `\n\n### ${q.name}, consent on (another organization, ${q.consent.matches} matches)\n\n${q.consentPlans.map((p) => `\`\`\`\n${p}\n\`\`\``).join('\n\n')}`,
      )
      .join('\n\n')}\n`,
  );
  await server.close();
}

/**
 * Server settings for a machine whose memory holds the data set (what a deployment would set; the
 * embedded defaults are for a laptop): page cache-sized effective_cache_size, SSD/RAM random page
 * cost, larger shared_buffers. Returns whether a restart is needed.
 */
const SETTINGS: Record<string, string> = { shared_buffers: '1GB', effective_cache_size: '8GB', random_page_cost: '1.1', work_mem: '16MB' };
async function configure(server: BenchServer): Promise<boolean> {
  let restart = false;
  for (const [name, value] of Object.entries(SETTINGS)) {
    const [row] = await server.db.query(`SELECT current_setting($1) AS v`, [name]);
    if (row.v === value) continue;
    await asSuperuser(`ALTER SYSTEM SET ${name} = '${value}'`);
    restart = true;
  }
  return restart;
}

/**
 * Statements the server's least-privileged role may not run (ALTER SYSTEM; VACUUM of tables it does
 * not own), as the embedded cluster's superuser, as bench:crud does.
 */
async function asSuperuser(sql: string): Promise<void> {
  const { superuser } = JSON.parse(readFileSync(join(PG_DIR, CREDENTIALS_FILE), 'utf8')) as { superuser: { user: string; password: string } };
  const client = new Client({ host: '127.0.0.1', port: Number(process.env.EMBEDDED_PG_PORT), user: superuser.user, password: superuser.password, database: 'hie' });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/** Generated patients in transaction Bundles of a few patients each, posted by parallel clients. */
async function load(server: BenchServer): Promise<{ loaded: number; seconds: number; resourcesPerSecond: number; patients: number }> {
  const [{ n: present }] = await server.db.query(`SELECT count(*)::int AS n FROM resource WHERE NOT deleted`);
  const gen = new SyntheticDataGenerator({ seed: SEED, patients: 10_000_000, organizations: 20, practitioners: 200 });
  // Take patient records until the target count; resume: a stored Patient means its whole transaction is stored.
  const stored = new Set<string>((await server.db.query(`SELECT id FROM resource WHERE resource_type = 'Patient'`)).map((r: { id: string }) => r.id));
  const bundles: Bundle[] = [];
  let total = 0;
  let patients = 0;
  let pending: Bundle['entry'] = [];
  let pendingCount = 0;
  for (const b of gen.transactionBundles()) {
    if (total >= TARGET) break;
    const entries = b.entry ?? [];
    total += entries.length;
    const patient = entries.find((e) => e.resource?.resourceType === 'Patient');
    if (patient) patients++;
    if (patient && stored.has(patient.resource!.id!)) continue;
    if (!patient) {
      if (!present) bundles.push(b);
      continue;
    }
    pending.push(...entries);
    if (++pendingCount === PATIENTS_PER_BUNDLE) {
      bundles.push({ resourceType: 'Bundle', type: 'transaction', entry: pending });
      pending = [];
      pendingCount = 0;
    }
  }
  if (pending.length) bundles.push({ resourceType: 'Bundle', type: 'transaction', entry: pending });
  const toLoad = bundles.reduce((a, b) => a + (b.entry?.length ?? 0), 0);
  if (!toLoad) {
    process.stdout.write(`load: ${present} resources already stored in ${PG_DIR}; skipping the load\n`);
    return { loaded: 0, seconds: 0, resourcesPerSecond: 0, patients };
  }
  process.stdout.write(`load: ${present} stored, ${toLoad} to load (${patients} patients, target ${TARGET}) with ${LOAD_CLIENTS} clients into ${PG_DIR}\n`);
  // The ingest path as bench:ingest drives it: transaction Bundles of several patients (≈ 300 entries)
  // posted by LOAD_CLIENTS parallel clients in a child process (bench/ingest-client), so sending and
  // reading never compete with the server's event loop. Chunks of Bundles keep memory bounded.
  const started = performance.now();
  let done = 0;
  let lastReport = started;
  let tokenAt = Date.now();
  let token = server.token;
  let first = 0;
  // The first bundle (directory: organizations, practitioners) before the patients that refer to it.
  const info = !present ? [JSON.stringify(bundles[0])] : [];
  if (!present) first = 1;
  for (let i = first; i < bundles.length || info.length; i += BUNDLES_PER_CHUNK) {
    if (Date.now() - tokenAt > 40 * 60_000) {
      tokenAt = Date.now();
      token = await server.newToken();
    }
    const chunk = bundles.slice(i, i + BUNDLES_PER_CHUNK);
    const outcome = await postChunk(server.baseUrl, token, info.splice(0), chunk.map((b) => JSON.stringify(b)));
    if (outcome.errors.length) throw new Error(`load: ${outcome.errors.length} failed Bundles or entries, e.g. ${outcome.errors[0]}`);
    done += (i === first && first ? bundles[0].entry!.length : 0) + chunk.reduce((a, b) => a + (b.entry?.length ?? 0), 0);
    const now = performance.now();
    if (now - lastReport > 15_000) {
      lastReport = now;
      const rate = done / ((now - started) / 1000);
      process.stdout.write(
        `load: ${present + done}/${present + toLoad} resources, ${Math.round(rate)}/s, ${Math.round((now - started) / 1000)} s, ETA ${Math.round((toLoad - done) / rate / 60)} min\n`,
      );
    }
  }
  const seconds = (performance.now() - started) / 1000;
  process.stdout.write(`load: ${done} resources in ${Math.round(seconds)} s (${Math.round(done / seconds)}/s)\n`);
  recordLoad({ date: new Date().toISOString(), from: present, loaded: done, seconds: Math.round(seconds), resourcesPerSecond: Math.round(done / seconds) });
  return { loaded: done, seconds: Math.round(seconds), resourcesPerSecond: Math.round(done / seconds), patients };
}

interface LoadRun {
  date: string;
  from: number;
  loaded: number;
  seconds: number;
  resourcesPerSecond: number;
}
/** Every load into this bench database (a 1M database is loaded over several runs), beside its directory. */
const LOADS_FILE = `${PG_DIR.replace(/\/$/, '')}.loads.json`;
function loadRuns(): LoadRun[] {
  return existsSync(LOADS_FILE) ? (JSON.parse(readFileSync(LOADS_FILE, 'utf8')) as LoadRun[]) : [];
}
function recordLoad(run: LoadRun): void {
  writeFileSync(LOADS_FILE, JSON.stringify([...loadRuns(), run], null, 1));
}

/** One chunk of Bundles through bench/ingest-client (its own process): info Bundles first, then the rest in parallel. */
async function postChunk(baseUrl: string, token: string, info: string[], patients: string[]): Promise<ClientOutcome> {
  const client = fork(join(__dirname, 'ingest-client.js'), { stdio: 'inherit', serialization: 'advanced' });
  const message = <T>(): Promise<T> => new Promise((resolve) => client.once('message', (m) => resolve(m as T)));
  const ready = message<'ready'>();
  client.send({ baseUrl, token, info, patients, clients: LOAD_CLIENTS });
  await ready;
  const done = message<ClientOutcome>();
  client.send('go');
  return done;
}

/** Concrete values from the loaded data, so every query has a realistic, reported match count. */
async function chooseQueries(server: BenchServer): Promise<Query[]> {
  // A patient with a typical number of observations: the median over a sample of patients.
  const sample: { target_id: string; n: number }[] = await server.db.query(`SELECT target_id, count(*)::int AS n FROM search_reference
      WHERE resource_type = 'Observation' AND param = 'subject' AND target_type = 'Patient' AND target_id LIKE 'syn-pat-1%'
      GROUP BY 1 ORDER BY 2, 1 LIMIT 2000`);
  const patient = sample[Math.floor(sample.length / 2)].target_id;
  const family = 'Kowalski';
  return [
    // Not a search: the floor every request pays (HTTP, token check, consent, audit, JSON).
    { name: 'read-baseline', path: `/fhir/Patient/${patient}` },
    { name: 'token', path: '/fhir/Observation?code=http://loinc.org|8867-4&_count=20', target: 'p50 ≤ 10 ms, p99 ≤ 50 ms' },
    { name: 'token-rare', path: '/fhir/Observation?code=http://loinc.org|85354-9&category=vital-signs&_count=20' },
    { name: 'reference', path: `/fhir/Observation?subject=Patient/${patient}&_count=20`, target: 'p50 ≤ 10 ms, p99 ≤ 50 ms' },
    { name: 'date', path: '/fhir/Observation?date=2021-06-15&_count=20', target: 'p50 ≤ 10 ms, p99 ≤ 50 ms' },
    { name: 'date-range', path: '/fhir/Encounter?date=ge2024-01-01&date=lt2024-02-01&_count=20', target: 'p50 ≤ 10 ms, p99 ≤ 50 ms' },
    { name: 'string-prefix', path: '/fhir/Patient?name=kow&_count=20', target: 'p50 ≤ 15 ms' },
    { name: 'chained', path: `/fhir/Observation?subject:Patient.name=${encodeURIComponent(family)}&_count=20` },
    { name: 'chained-identifier', path: `/fhir/Observation?subject:Patient.identifier=${encodeURIComponent(`http://hie.example.org/fhir/sid/person-id|P007${String(1234).padStart(7, '0')}`)}&_count=20` },
    { name: 'has', path: '/fhir/Patient?_has:Condition:subject:code=44054006&_count=20' },
    { name: 'sort-page-1', path: '/fhir/Observation?code=http://loinc.org|8867-4&_sort=-date&_count=20' },
    { name: 'sort-page-50', path: '/fhir/Observation?code=http://loinc.org|8867-4&_sort=-date&_count=20', page: 50, target: '≤ 1.2 × page 1' },
    { name: 'lastUpdated-page-1', path: '/fhir/Observation?_sort=_lastUpdated&_count=20' },
    { name: 'lastUpdated-page-50', path: '/fhir/Observation?_sort=_lastUpdated&_count=20', page: 50, target: '≤ 1.2 × page 1' },
    { name: 'total-accurate', path: '/fhir/Observation?code=http://loinc.org|8867-4&_total=accurate&_count=20', target: '≤ 300 ms' },
    { name: 'include', path: `/fhir/Observation?code=http://loinc.org|8867-4&_include=Observation:subject&_include=Observation:encounter&_count=20` },
  ];
}

async function resolveUrl(server: BenchServer, q: Query, token = server.token): Promise<string> {
  let url = `${server.baseUrl}${q.path}`;
  for (let i = 1; i < (q.page ?? 1); i++) {
    const bundle = await getJson(server, url, token);
    const next = bundle.link?.find((l) => l.relation === 'next')?.url;
    if (!next) throw new Error(`${q.name}: no page ${i + 1}`);
    // Links carry the configured public base URL; the bench talks to the loopback port.
    const u = new URL(next);
    url = `${server.baseUrl}${u.pathname.replace(/^.*?\/fhir/, '/fhir')}${u.search}`;
  }
  return url;
}

async function matchCount(server: BenchServer, path: string, token = server.token): Promise<number> {
  const u = new URL(`${server.baseUrl}${path}`);
  u.searchParams.delete('_count');
  u.searchParams.set('_summary', 'count');
  return (await getJson(server, u.toString(), token)).total ?? NaN;
}

/**
 * 10% of the patients (every tenth by number, never the one the queries read) get a Consent denying
 * all sharing, written over HTTP by their own organization like any Consent (idempotent on reruns).
 */
async function ensureConsents(server: BenchServer, keepVisible: string): Promise<{ patients: number; denied: number }> {
  const patients: { id: string }[] = await server.db.query(`SELECT id FROM resource WHERE resource_type = 'Patient' AND NOT deleted ORDER BY id`);
  // By the generator's patient number, so the set stays every tenth patient as the database grows.
  const chosen = patients.map((p) => p.id).filter((id) => Number(/(\d+)$/.exec(id)?.[1] ?? NaN) % 10 === 0 && id !== keepVisible);
  const have = new Set<string>((await server.db.query(`SELECT DISTINCT patient_id FROM consent_provision`)).map((r: { patient_id: string }) => r.patient_id));
  // Consents of an earlier choice (every tenth by sorted id, before the database grew) are withdrawn.
  const wanted = new Set(chosen);
  const stale: { consent_id: string }[] = await server.db.query(`SELECT DISTINCT consent_id FROM consent_provision WHERE NOT (patient_id = ANY($1))`, [chosen]);
  for (const { consent_id } of stale) {
    const res = await fetch(`${server.baseUrl}/fhir/Consent/${consent_id}`, { method: 'DELETE', headers: { Authorization: `Bearer ${server.token}` } });
    if (res.status !== 200 && res.status !== 204) throw new Error(`consents: DELETE ${res.status} ${(await res.text()).slice(0, 300)}`);
  }
  for (const id of have) if (!wanted.has(id)) have.delete(id);
  const missing = chosen.filter((id) => !have.has(id));
  for (let i = 0; i < missing.length; i += 50) {
    const entry = missing.slice(i, i + 50).map((id) => ({
      resource: {
        resourceType: 'Consent',
        status: 'active',
        scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
        category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
        patient: { reference: `Patient/${id}` },
        policyRule: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'OPTOUT' }] },
        provision: { type: 'deny' },
      },
      request: { method: 'POST', url: 'Consent' },
    }));
    const res = await fetch(`${server.baseUrl}/fhir`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${server.token}`, 'Content-Type': 'application/fhir+json' },
      body: JSON.stringify({ resourceType: 'Bundle', type: 'transaction', entry }),
    });
    if (res.status !== 200) throw new Error(`consents: ${res.status} ${(await res.text()).slice(0, 500)}`);
  }
  if (missing.length || stale.length) await server.db.query('ANALYZE consent_provision');
  // Counted, not assumed.
  const [{ n: denied }] = await server.db.query(`SELECT count(DISTINCT patient_id)::int AS n FROM consent_provision`);
  process.stdout.write(`consents: ${denied} of ${patients.length} patients deny sharing (${missing.length} written now, ${stale.length} withdrawn)\n`);
  return { patients: patients.length, denied };
}

async function getJson(server: BenchServer, url: string, token = server.token): Promise<Bundle> {
  const res = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });
  if (res.status !== 200) throw new Error(`${url}: ${res.status} ${(await res.text()).slice(0, 300)}`);
  return (await res.json()) as Bundle;
}

/** Runs the request once while recording the server's SQL, then EXPLAIN (ANALYZE, BUFFERS) of each statement. */
async function explain(server: BenchServer, url: string, token = server.token): Promise<string[]> {
  const captured: [string, unknown[]][] = [];
  const db = server.db as unknown as { query: (sql: string, params?: unknown[]) => Promise<unknown> };
  const original = db.query;
  db.query = function (this: unknown, sql: string, params?: unknown[]) {
    if (/^\s*SELECT/i.test(sql) && /\bresource r\b/.test(sql)) captured.push([sql, params ?? []]);
    return original.call(this, sql, params);
  };
  try {
    await getJson(server, url, token);
  } finally {
    db.query = original;
  }
  const plans: string[] = [];
  for (const [sql, params] of captured) {
    const rows: { 'QUERY PLAN': string }[] = await server.db.query(`EXPLAIN (ANALYZE, BUFFERS) ${sql}`, params);
    plans.push(`${sql.replace(/\n\s+/g, '\n  ')}\n-- params: ${JSON.stringify(params).slice(0, 400)}\n${rows.map((r) => r['QUERY PLAN']).join('\n')}`);
  }
  return plans;
}

interface Stats {
  requests: number;
  errors: number;
  p50: number;
  p95: number;
  p99: number;
  rps: number;
  /** Sorted latencies, for the mix percentiles (not written to the JSON). */
  samples?: number[];
}

/**
 * A percentile of the query mix: every query weighs the same whatever its request count (each
 * sample weighs 1 / its query's count), so a fast query measured more often does not dominate.
 */
function mixPercentile(perQuery: number[][], p: number): number {
  const weighted = perQuery.filter((s) => s.length).flatMap((s) => s.map((v) => ({ v, w: 1 / s.length })));
  weighted.sort((a, b) => a.v - b.v);
  const total = weighted.reduce((a, x) => a + x.w, 0);
  let seen = 0;
  for (const x of weighted) {
    seen += x.w;
    if (seen >= (p / 100) * total) return Math.round(x.v * 10) / 10;
  }
  return NaN;
}

async function measure(url: string, token: string, concurrency: number, maxRequests: number, maxSeconds: number): Promise<Stats> {
  const result = await new Promise<{ latencies: number[]; errors: string[]; seconds: number }>((resolve, reject) => {
    const worker = new Worker(join(__dirname, 'search-load.worker.js'), { workerData: { url, token, concurrency, maxRequests, maxSeconds } });
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  if (result.errors.length) process.stderr.write(`${url}: ${result.errors.length} errors, e.g. ${result.errors[0]}\n`);
  const sorted = [...result.latencies].sort((a, b) => a - b);
  const r = (n: number): number => Math.round(n * 10) / 10;
  return {
    requests: sorted.length,
    errors: result.errors.length,
    p50: r(percentile(sorted, 50)),
    p95: r(percentile(sorted, 95)),
    p99: r(percentile(sorted, 99)),
    rps: r(sorted.length / result.seconds),
    samples: sorted,
  };
}

function markdown(json: {
  machine: Record<string, unknown>;
  settings: { name: string; setting: string; unit: string | null }[];
  dataset: { resources: number; byType: { resource_type: string; n: number }[]; databaseMiB: number; consents: { patients: number; denied: number } };
  load: { loaded: number; seconds: number; resourcesPerSecond: number };
  loads: LoadRun[];
  mix: { c1p50: number; c8p99: number; consentC1p50: number; consentC8p99: number };
  queries: (Query & { url: string; matches: number; sqlMs: number; c1: Stats; c8: Stats; consent: { matches: number; c1: Stats; c8: Stats } })[];
}): string {
  const q = (name: string) => json.queries.find((x) => x.name === name);
  const cell = (name: string) => {
    const x = q(name);
    return x ? `${x.c1.p50} ms (SQL ${x.sqlMs} ms; c8 p99 ${x.c8.p99} ms)` : 'not run';
  };
  const lastLoad = json.loads[json.loads.length - 1];
  // Issue 14's table: the 1M "before" figures of docs/search.md (25 Nov, faster cores) beside this run.
  const linear = [
    ['page 50 of `_sort=-date` over a broad match', '583 ms', cell('sort-page-50'), '≤ 50 ms'],
    ['a sort on a search parameter over a broad match, first page', '571 ms', cell('sort-page-1'), '≤ 50 ms'],
    ['a broad chain (`subject:Patient.name=…`)', '296 ms', cell('chained'), '≤ 50 ms'],
    ['`_has` over a common code', '79 ms', cell('has'), '≤ 30 ms'],
    ['concurrency 8, p99 of the mix', '43–99 ms (simple queries)', `${json.mix.c8p99} ms`, '≤ 50 ms'],
    [
      '`bench:search` load of 1M resources',
      '~25 min (≈ 650 res/s)',
      lastLoad ? `${lastLoad.resourcesPerSecond} res/s (${lastLoad.loaded} resources from ${lastLoad.from}, ${lastLoad.date.slice(0, 10)}): 1M in ≈ ${Math.round(1_000_000 / lastLoad.resourcesPerSecond / 60)} min` : 'no load recorded',
      '≤ 10 min',
    ],
  ];
  const m = json.machine;
  const rows = json.queries.map(
    (q) =>
      `| ${q.name} | \`${q.url.replace(/\|/g, '\\|').replace(/_cursor=[^&]+/, '_cursor=…')}\` | ${q.matches} | ${q.c1.p50} | ${q.c1.p95} | ${q.c1.p99} | ${q.c1.rps} | ${q.c8.p50} | ${q.c8.p95} | ${q.c8.p99} | ${q.c8.rps} | ${q.consent.matches} | ${q.consent.c1.p50} | ${q.consent.c8.p50} | ${(q.consent.c1.p50 / q.c1.p50).toFixed(2)} | ${q.target ?? ''} |`,
  );
  return `# Search benchmark (${m.date})

Machine: ${m.cores} cores (${m.cpu}), ${m.memoryGiB} GiB, Node ${m.node}, ${m.postgres}; ${json.settings.map((s) => `${s.name}=${s.setting}${s.unit ?? ''}`).join(', ')}.
Dataset: ${json.dataset.resources} resources (${json.dataset.byType.map((t) => `${t.resource_type} ${t.n}`).join(', ')}), database ${json.dataset.databaseMiB} MiB.
${json.dataset.resources < 1_000_000 ? `**Smaller than the issue's 1,000,000 resources** (BENCH_RESOURCES=${TARGET}).\n` : ''}${json.load.loaded ? `Loaded in this run: ${json.load.loaded} resources in ${json.load.seconds} s (${json.load.resourcesPerSecond}/s) over HTTP.` : 'Data loaded by an earlier run (persistent bench database).'}
Server in-process over loopback HTTP with a hospital token (full pipeline: auth, consent predicate, audit); load from a worker thread; latency in ms (send to last byte); at most ${MAX_SECONDS} s per cell. Load average (1/5/15 min) when the measurements ended: ${loadavg().map((n) => n.toFixed(2)).join(' / ')} (2 cores; anything else running shows here), so quote medians.

Consent on: ${json.dataset.consents.denied} of ${json.dataset.consents.patients} patients (${Math.round((100 * json.dataset.consents.denied) / json.dataset.consents.patients)}%) have a Consent denying all sharing. The main columns read as the loading organization (own data: the consent predicate short-circuits); the consent-on columns read the same queries as another organization (purpose TREAT, opt-out), so the predicate probes consent_provision for every candidate row of a consent subject (a patient with a provision or linked records) and hides the denied patients' data (fewer matches). Ratio: consent-on c1 p50 / c1 p50.

| query | request | matches | c1 p50 | c1 p95 | c1 p99 | c1 req/s | c8 p50 | c8 p95 | c8 p99 | c8 req/s | consent-on matches | consent-on c1 p50 | consent-on c8 p50 | ratio | target |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
${rows.join('\n')}

The query mix (every query above weighs the same): c1 p50 ${json.mix.c1p50} ms own data, ${json.mix.consentC1p50} ms consent on, **ratio ${(json.mix.consentC1p50 / json.mix.c1p50).toFixed(2)}** (issues 10 and 12: ≤ 1.20); c8 p99 ${json.mix.c8p99} ms own data, ${json.mix.consentC8p99} ms consent on (issue 14: ≤ 50 ms).

## Linear costs (issue 14): before and now

"Before" is the 1M run of 25 Nov (docs/search.md), on cores ≈ 2.4× faster than since 30 Nov (docs/performance.md). "Now" is this run's c1 p50 (own data), with the SQL's own time from the EXPLAIN ANALYZE of its statements (\`${RESULTS_NAME}-plans.md\`).

| query | before | now | target |
|---|---|---|---|
${linear.map((r) => `| ${r.join(' | ')} |`).join('\n')}

Loads into this database: ${json.loads.map((l) => `${l.loaded} from ${l.from} at ${l.resourcesPerSecond} res/s (${l.date.slice(0, 10)})`).join('; ') || 'not recorded'}.
`;
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:search failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
