// Matching off for the load (read at boot); the create-latency step turns it on and off at run time.
process.env.IDENTITY_MATCH_ON_WRITE = 'off';
// Not the search bench's default port (its persistent cluster may be up).
process.env.EMBEDDED_PG_PORT ??= '56991';
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import type { Bundle, Patient } from '@medplum/fhirtypes';
import { Client } from 'pg';
import { APP_CONFIG, AppConfig } from '../src/config/app.config';
import { CREDENTIALS_FILE } from '../src/database/embedded-postgres';
import { demographicsOf } from '../src/identity/demographics';
import { BATCH_PAGE_SIZE, IDENTITY_BATCH_MATCH_QUEUE, IdentityBatchMatchJob } from '../src/identity/identity-batch-match.job';
import { IDENTITY_MATCH_QUEUE } from '../src/identity/identity-matching.job';
import { identityPopulation, LabelledPatient } from '../src/identity/identity-population';
import { CandidateDemographics, candidatesOfManyQuery, candidatesQuery } from '../src/identity/patient-demographics.repository';
import { BenchServer, machineInfo, percentile, startBenchServer, writeResults } from './bench-support';

/**
 * npm run bench:match — identity matching at scale (issue 27, docs/identity.md). Into a persistent
 * embedded PostgreSQL (BENCH_PG_DIR, default ./data/bench-match-postgres): loads BENCH_PATIENTS
 * (default 1,000,000) labelled Patients of three organizations through the API with matching off
 * (transaction Bundles; reruns find them, BENCH_LOAD_ONLY=1 stops after the load), builds the
 * Persons with the batch match (timed on its own), measures a Patient create at one client with
 * matching after write on and off (alternating blocks: creates that link nothing, and linking
 * creates reported apart), then `Patient/$match` latency at one client, with the EXPLAIN of its
 * blocking query. BENCH_MATCH_ONLY=1 measures `$match` alone (no creates, no batch match) on a
 * database loaded before (with BENCH_PATIENTS at most what it holds, nothing is loaded).
 */
const TARGET = Number(process.env.BENCH_PATIENTS ?? 1_000_000);
const PG_DIR = process.env.BENCH_PG_DIR ?? join(process.cwd(), 'data', 'bench-match-postgres');
const RESULTS_NAME = process.env.BENCH_RESULTS_NAME ?? 'match';
/** Persons per generated chunk (three records each, plus look-alikes): the generator's seed is the chunk's. */
const CHUNK_PERSONS = 2000;
const BUNDLE_SIZE = 500;
const LOAD_CLIENTS = Number(process.env.BENCH_LOAD_CLIENTS ?? 3);
const CREATE_BLOCKS = Number(process.env.BENCH_CREATE_BLOCKS ?? 6);
const CREATES_PER_BLOCK = Number(process.env.BENCH_CREATES_PER_BLOCK ?? 40);
const MATCHES = Number(process.env.BENCH_MATCHES ?? 300);
/** The batch match is timed up to this long; past it the rate so far is reported (its pages keep running). */
const BATCH_MAX_SECONDS = Number(process.env.BENCH_BATCH_MAX_SECONDS ?? 3600);
const ORGS = ['match-org-0', 'match-org-1', 'match-org-2'];
/** The create-latency step's organizations: not the load's, whose count is where a load resumes. */
const CREATE_ORGS = ['match-create-0', 'match-create-1'];
const SYLLABLES = ['ka', 'lo', 'mi', 'ne', 'ru', 'sa', 'te', 'vo', 'ber', 'dan', 'fel', 'gor', 'hal', 'jor', 'kin', 'lan', 'mor', 'nor', 'pel', 'quin', 'ros', 'sten', 'tor', 'ul', 'var', 'wen', 'yor', 'zel', 'bri', 'cor'];

/**
 * One chunk of the labelled population. The generator's name lists are short (60 family names),
 * which a million people would share hundreds of times over; each person's family name gets two
 * syllables of its own (the same at every organization) so names vary as in a real region.
 */
function chunk(k: number): LabelledPatient[] {
  const records = identityPopulation({ seed: 10_000 + k, persons: CHUNK_PERSONS, twinPairs: 20, parentChildPairs: 20, orgs: 3 });
  for (const r of records) {
    let h = 0;
    for (const c of `${k}:${r.person.replace(/-[ab]$/, '')}`) h = (h * 31 + c.charCodeAt(0)) >>> 0;
    const suffix = SYLLABLES[h % 30] + SYLLABLES[Math.floor(h / 30) % 30];
    for (const n of r.patient.name ?? []) if (n.family) n.family = n.family + suffix;
  }
  return records;
}
const CHUNK_RECORDS = chunk(0).length;

async function main(): Promise<void> {
  let server = await startBenchServer({ persistentPgDir: PG_DIR });
  const load = await loadPatients(server);
  if (load.loaded > 0) {
    process.stdout.write('VACUUM ANALYZE …\n');
    await asSuperuser('VACUUM ANALYZE');
  }
  if (process.env.BENCH_LOAD_ONLY === '1') {
    await server.close();
    return;
  }
  await server.close();
  server = await startBenchServer({ persistentPgDir: PG_DIR });
  // Statistics of the blocking keys as this version's migrations left them (a new key column is filled by its migration).
  await asSuperuser('ANALYZE patient_demographics');
  const [{ n: patients }] = await server.db.query(`SELECT count(*)::int AS n FROM patient_demographics`);
  // BENCH_BATCH_RESUME=1: a batch match cut by an earlier run (its pages stay queued) goes on here.
  const resume = process.env.BENCH_BATCH_RESUME === '1';
  if (!resume) await cancelLeftoverPages(server);
  // $match and creates first: they need no Persons, and the batch match may be cut at BENCH_BATCH_MAX_SECONDS.
  // A resumed batch's pages run from the start, so then only `$match` is measured, after them.
  const first = resume ? undefined : await matchLatency(server);
  // BENCH_MATCH_ONLY=1: `$match` latency only, on a database loaded (and batch-matched) before.
  const matchOnly = process.env.BENCH_MATCH_ONLY === '1';
  const creates = matchOnly || resume ? SKIPPED_CREATES : await createLatency(server);
  const workers = server.app.get<AppConfig>(APP_CONFIG).jobs.workers;
  const batch: BatchResult = resume ? await resumedBatch(server) : !matchOnly && workers ? await batchMatch(server) : { skipped: true, links: 0 };
  if (resume) await cancelLeftoverPages(server);
  const match = first ?? (await matchLatency(server));
  const machine = { ...(await machineInfo(server.db)), loadAverageAtEnd: loadavg().map((n) => Math.round(n * 100) / 100) };
  const json: MatchBench = { machine, patients, jobsWorkers: server.app.get<AppConfig>(APP_CONFIG).jobs.workers, load, batch, creates, match: { latency: match.latency, withMatch: match.withMatch } };
  writeResults(RESULTS_NAME, json, markdown(json, match.plan, match.pagePlan));
  await server.close();
}

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

async function post(server: BenchServer, token: string, body: unknown, path = '/fhir'): Promise<{ status: number; body: Bundle & Record<string, unknown> }> {
  const res = await fetch(server.baseUrl + path, { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/fhir+json' }, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as Bundle & Record<string, unknown> };
}

/** Chunks of the population until TARGET records; resumes after the last whole chunk stored. */
async function loadPatients(server: BenchServer): Promise<{ loaded: number; seconds: number; patientsPerSecond: number }> {
  const [{ n: present }] = await server.db.query(`SELECT count(*)::int AS n FROM patient_demographics WHERE custodian_org = ANY($1::text[])`, [ORGS]);
  const tokens = await Promise.all(ORGS.map((o) => server.tokenFor(o)));
  const started = performance.now();
  let loaded = 0;
  // A database holding the target already loads nothing (a last, partial chunk would be loaded again).
  for (let k = Math.floor(present / CHUNK_RECORDS); present < TARGET && k * CHUNK_RECORDS < TARGET; k++) {
    const records = chunk(k).slice(0, TARGET - k * CHUNK_RECORDS);
    const bundles: { org: number; entries: Patient[] }[] = [];
    for (let org = 0; org < ORGS.length; org++) {
      const mine = records.filter((r) => r.org === org).map((r) => r.patient);
      for (let i = 0; i < mine.length; i += BUNDLE_SIZE) bundles.push({ org, entries: mine.slice(i, i + BUNDLE_SIZE) });
    }
    let next = 0;
    await Promise.all(
      Array.from({ length: LOAD_CLIENTS }, async () => {
        while (next < bundles.length) {
          const b = bundles[next++];
          const res = await post(server, tokens[b.org], { resourceType: 'Bundle', type: 'transaction', entry: b.entries.map((resource) => ({ resource, request: { method: 'POST', url: 'Patient' } })) });
          if (res.status !== 200) throw new Error(`load bundle: ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`);
          loaded += b.entries.length;
        }
      }),
    );
    const s = (performance.now() - started) / 1000;
    process.stdout.write(`loaded ${present + loaded} patients (${Math.round(loaded / s)}/s, load ${loadavg()[0].toFixed(1)})\n`);
  }
  const seconds = Math.round((performance.now() - started) / 100) / 10;
  return { loaded, seconds, patientsPerSecond: seconds ? Math.round(loaded / seconds) : 0 };
}

async function queueOpen(server: BenchServer, queue: string): Promise<{ open: number; failed: number }> {
  const [row] = await server.db.query(
    `SELECT count(*) FILTER (WHERE state NOT IN ('completed', 'failed', 'cancelled'))::int AS open, count(*) FILTER (WHERE state = 'failed')::int AS failed FROM pgboss.job WHERE name = $1`,
    [queue],
  );
  return row;
}

/**
 * The pages an earlier run's cut batch match left queued would run beside the measurements: they are
 * cancelled (the ones already running finish first, and the next pages they enqueue are cancelled too).
 */
async function cancelLeftoverPages(server: BenchServer): Promise<void> {
  for (;;) {
    await asSuperuser(`UPDATE pgboss.job SET state = 'cancelled' WHERE name = '${IDENTITY_BATCH_MATCH_QUEUE}' AND state IN ('created', 'retry')`);
    const [{ n }] = await server.db.query(`SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1 AND state = 'active'`, [IDENTITY_BATCH_MATCH_QUEUE]);
    if (!n) return;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/** Waits for a queue to have no open job (true), or up to `maxMs` (false). */
async function settled(server: BenchServer, queue: string, maxMs = Infinity): Promise<boolean> {
  const started = performance.now();
  for (;;) {
    const { open, failed } = await queueOpen(server, queue);
    if (failed) throw new Error(`${failed} job(s) of ${queue} failed`);
    if (!open) return true;
    if (performance.now() - started > maxMs) return false;
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The batch match over every loaded Patient, timed from its start to its last page. */
interface BatchResult {
  skipped?: boolean;
  /** Set when BENCH_BATCH_MAX_SECONDS cut the timing: the Patients matched by then. */
  cutAfterPatients?: number;
  seconds?: number;
  patientsPerSecond?: number;
  persons?: number;
  links: number;
  reviews?: number;
}

async function batchMatch(server: BenchServer): Promise<BatchResult> {
  const [{ n: runs }] = await server.db.query(`SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1`, [IDENTITY_BATCH_MATCH_QUEUE]);
  const [{ n: already }] = await server.db.query(`SELECT count(*)::int AS n FROM identity_person_link`);
  if (runs > 0 && process.env.BENCH_REMATCH !== '1') {
    process.stdout.write(`batch match: run before (${already} links; BENCH_REMATCH=1 to run it again)\n`);
    return { skipped: true, links: already };
  }
  const started = performance.now();
  await server.db.transaction((tx) => server.app.get(IdentityBatchMatchJob).start(tx));
  const done = await settled(server, IDENTITY_BATCH_MATCH_QUEUE, BATCH_MAX_SECONDS * 1000);
  const seconds = Math.round((performance.now() - started) / 100) / 10;
  const [{ links, persons }] = await server.db.query(`SELECT count(*)::int AS links, count(DISTINCT person_id)::int AS persons FROM identity_person_link`);
  const [{ reviews }] = await server.db.query(`SELECT count(*)::int AS reviews FROM identity_review`);
  const [{ pages }] = await server.db.query(`SELECT count(*)::int AS pages FROM pgboss.job WHERE name = $1 AND state = 'completed'`, [IDENTITY_BATCH_MATCH_QUEUE]);
  const [{ n: all }] = await server.db.query(`SELECT count(*)::int AS n FROM patient_demographics`);
  const patients = done ? all : pages * BATCH_PAGE_SIZE;
  process.stdout.write(`batch match: ${patients} of ${all} patients in ${seconds} s${done ? '' : ' (cut)'}: ${persons} Persons, ${links} links, ${reviews} review tasks\n`);
  return { ...(done ? {} : { cutAfterPatients: patients }), seconds, patientsPerSecond: Math.round(patients / seconds), persons, links, reviews };
}

/**
 * The rest of a cut batch match (BENCH_BATCH_RESUME=1): its queued pages run on (pages whose worker
 * was stopped are retried once their job expires), timed from this start to the last page, or cut
 * again at BENCH_BATCH_MAX_SECONDS; the rate counts the pages completed in this run.
 */
async function resumedBatch(server: BenchServer): Promise<BatchResult> {
  const completed = async (): Promise<number> =>
    (await server.db.query(`SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1 AND state = 'completed'`, [IDENTITY_BATCH_MATCH_QUEUE]))[0].n;
  const before = await completed();
  const started = performance.now();
  const done = await settled(server, IDENTITY_BATCH_MATCH_QUEUE, BATCH_MAX_SECONDS * 1000);
  const seconds = Math.round((performance.now() - started) / 100) / 10;
  const pages = (await completed()) - before;
  const [{ links, persons }] = await server.db.query(`SELECT count(*)::int AS links, count(DISTINCT person_id)::int AS persons FROM identity_person_link`);
  const [{ reviews }] = await server.db.query(`SELECT count(*)::int AS reviews FROM identity_review`);
  const patients = pages * BATCH_PAGE_SIZE;
  process.stdout.write(`batch match resumed: ${pages} pages (about ${patients} patients) in ${seconds} s${done ? ', done' : ' (cut)'}: ${persons} Persons, ${links} links, ${reviews} review tasks\n`);
  return { ...(done ? {} : { cutAfterPatients: patients }), seconds, patientsPerSecond: Math.round(patients / seconds), persons, links, reviews };
}

interface Latency {
  n: number;
  p50: number;
  p95: number;
  mean: number;
}

function stats(samples: number[]): Latency {
  const sorted = [...samples].sort((a, b) => a - b);
  const r = (x: number) => Math.round(x * 100) / 100;
  return { n: sorted.length, p50: r(percentile(sorted, 50)), p95: r(percentile(sorted, 95)), mean: r(sorted.reduce((a, b) => a + b, 0) / Math.max(1, sorted.length)) };
}

/**
 * A Patient create at one client, IDENTITY_MATCH_ON_WRITE on and off in alternating blocks (the
 * matching jobs of an "on" block settle before the next block). Creates that link nothing are new
 * people; linking creates are a second organization's record of someone created in the block before.
 */
interface CreateResult {
  off: Latency;
  onLinksNothing: Latency;
  onLinking: Latency;
  ratioP50: number;
  ratioMean: number;
}

const NOT_RUN: Latency = { n: 0, p50: 0, p95: 0, mean: 0 };
const SKIPPED_CREATES: CreateResult = { off: NOT_RUN, onLinksNothing: NOT_RUN, onLinking: NOT_RUN, ratioP50: 0, ratioMean: 0 };

async function createLatency(server: BenchServer): Promise<CreateResult> {
  const config = server.app.get<AppConfig>(APP_CONFIG);
  const tokens = await Promise.all(CREATE_ORGS.map((o) => server.tokenFor(o)));
  // People no loaded record matches: a seed of their own and family names no chunk uses.
  const people = identityPopulation({ seed: 777, persons: CREATE_BLOCKS * CREATES_PER_BLOCK * 2 + 20, twinPairs: 0, parentChildPairs: 0, orgs: 2 });
  people.forEach((r) => r.patient.name?.forEach((n) => (n.family = `${n.family}xq${r.person.replace(/\D/g, '')}`)));
  const first = people.filter((r) => r.org === 0);
  const second = people.filter((r) => r.org === 1);
  const samples: Record<'off' | 'on' | 'onLinking', number[]> = { off: [], on: [], onLinking: [] };
  const create = async (org: number, patient: Patient): Promise<number> => {
    const t0 = performance.now();
    const res = await post(server, tokens[org], patient, '/fhir/Patient');
    const ms = performance.now() - t0;
    if (res.status !== 201) throw new Error(`create: ${res.status}`);
    return ms;
  };
  let p = 0;
  // Warm-up, not measured.
  config.identityMatchOnWrite = false;
  for (let i = 0; i < 20; i++) await create(0, first[p++].patient);
  for (let block = 0; block < CREATE_BLOCKS * 2; block++) {
    const on = block % 2 === 1;
    config.identityMatchOnWrite = on;
    const from = p;
    for (let i = 0; i < CREATES_PER_BLOCK && p < first.length; i++) samples[on ? 'on' : 'off'].push(await create(0, first[p++].patient));
    // JOBS_WORKERS=off (matching on other nodes): the "on" creates enqueue only; nothing links here.
    if (on && config.jobs.workers) {
      await settled(server, IDENTITY_MATCH_QUEUE);
      // The same people at the second organization: each create's job links it.
      for (let i = from; i < p; i++) samples.onLinking.push(await create(1, second[i].patient));
      await settled(server, IDENTITY_MATCH_QUEUE);
    }
  }
  config.identityMatchOnWrite = false;
  const off = stats(samples.off);
  const on = stats(samples.on);
  const linking = stats(samples.onLinking);
  process.stdout.write(`create at one client: off p50 ${off.p50} ms, on (links nothing) p50 ${on.p50} ms (${(on.p50 / off.p50).toFixed(2)}x), linking p50 ${linking.p50} ms\n`);
  return { off, onLinksNothing: on, onLinking: linking, ratioP50: Math.round((on.p50 / off.p50) * 100) / 100, ratioMean: Math.round((on.mean / off.mean) * 100) / 100 };
}

/** `$match` at one client with records of the first chunk as input (another organization's view), and the blocking query's plan. */
async function matchLatency(server: BenchServer): Promise<{ latency: Latency; withMatch: number; plan: string; pagePlan: string }> {
  const token = await server.tokenFor(ORGS[1]);
  const inputs = chunk(0).filter((r) => r.org === 1);
  const call = async (r: LabelledPatient): Promise<{ ms: number; status: number; entries: number }> => {
    const t0 = performance.now();
    const res = await post(server, token, { resourceType: 'Parameters', parameter: [{ name: 'resource', resource: r.patient }, { name: 'count', valueInteger: 5 }] }, '/fhir/Patient/$match');
    return { ms: performance.now() - t0, status: res.status, entries: (res.body.entry ?? []).length };
  };
  for (let i = 0; i < 20; i++) await call(inputs[inputs.length - 1 - i]);
  const samples: number[] = [];
  let found = 0;
  for (let i = 0; i < MATCHES && i < inputs.length; i++) {
    const r = await call(inputs[i]);
    if (r.status !== 200) throw new Error(`$match: ${r.status}`);
    samples.push(r.ms);
    if (r.entries > 0) found++;
  }
  const [sql, params] = candidatesQuery(demographicsOf(inputs[0].patient));
  const plan = ((await server.db.query(`EXPLAIN (ANALYZE, BUFFERS) ${sql}`, params)) as { 'QUERY PLAN': string }[]).map((r) => r['QUERY PLAN']).join('\n');
  // The batch match's (and a matching batch's) statement for one page of 500 Patients.
  const page: { patient_id: string; birth_date: string | null }[] = await server.db.query(`SELECT patient_id, birth_date FROM patient_demographics ORDER BY patient_id LIMIT 500`);
  const [pageSql, pageParams] = candidatesOfManyQuery(page.map((r) => ({ patientId: r.patient_id, birthDate: r.birth_date ?? undefined }) as CandidateDemographics));
  const pagePlan = ((await server.db.query(`EXPLAIN (ANALYZE, BUFFERS) ${pageSql}`, pageParams)) as { 'QUERY PLAN': string }[]).map((r) => r['QUERY PLAN']).join('\n');
  const latency = stats(samples);
  process.stdout.write(`$match at one client: p50 ${latency.p50} ms, p95 ${latency.p95} ms (${found} of ${samples.length} with a match)\n`);
  return { latency, withMatch: found, plan, pagePlan };
}

interface MatchBench {
  machine: Record<string, unknown> & { loadAverageAtEnd: number[] };
  patients: number;
  jobsWorkers: boolean;
  load: { loaded: number; seconds: number; patientsPerSecond: number };
  batch: BatchResult;
  creates: CreateResult;
  match: { latency: Latency; withMatch: number };
}

function markdown(json: MatchBench, plan: string, pagePlan: string): string {
  const m = json.machine as Record<string, string | number> & { loadAverageAtEnd: number[] };
  const c = json.creates;
  const b = json.batch;
  return `# bench:match (${m.date})

Machine: ${m.cores} cores (${m.cpu}), ${m.memoryGiB} GiB, ${m.node}, ${m.postgres}; load average at the end ${m.loadAverageAtEnd.join(' ')} (a machine shared with other work: wall-clock times are inflated).

Job workers on this node: ${json.jobsWorkers ? 'on' : 'off (matching jobs are only enqueued)'}.

Patients: **${json.patients}** at three organizations (labelled population, ${CHUNK_PERSONS}-person chunks; target BENCH_PATIENTS=${TARGET}).

| step | result |
|---|---|
| load, matching off (this run) | ${json.load.loaded} Patients in ${json.load.seconds} s (${json.load.patientsPerSecond}/s) |
| batch match (Persons built) | ${!json.jobsWorkers ? 'not run (job workers off)' : b.skipped ? `skipped: ${b.links} links from an earlier run` : `${b.cutAfterPatients !== undefined ? `cut after ${b.cutAfterPatients} Patients: ` : ''}${b.seconds} s (${b.patientsPerSecond} Patients/s): ${b.persons} Persons, ${b.links} links, ${b.reviews} review Tasks`} |
${
  !c.off.n
    ? '| creates at one client | not run (BENCH_MATCH_ONLY=1) |\n'
    : `| create at one client, matching off | p50 ${c.off.p50} ms, p95 ${c.off.p95} ms, mean ${c.off.mean} ms (n ${c.off.n}) |
| create at one client, matching on, links nothing | p50 ${c.onLinksNothing.p50} ms, p95 ${c.onLinksNothing.p95} ms, mean ${c.onLinksNothing.mean} ms (n ${c.onLinksNothing.n}): **${c.ratioP50}x** off at p50, ${c.ratioMean}x mean |
| create at one client, matching on, linking | ${c.onLinking.n ? `p50 ${c.onLinking.p50} ms, p95 ${c.onLinking.p95} ms, mean ${c.onLinking.mean} ms (n ${c.onLinking.n})` : 'not run (job workers off: nothing links on this node)'} |
`
}| \`Patient/$match\` at one client | **p50 ${json.match.latency.p50} ms**, p95 ${json.match.latency.p95} ms (n ${json.match.latency.n}; ${json.match.withMatch} with a match) |

## EXPLAIN (ANALYZE, BUFFERS) of the blocking query

\`\`\`
${plan}
\`\`\`

## EXPLAIN (ANALYZE, BUFFERS) of the set-based candidates statement (one page of 500 Patients)

\`\`\`
${pagePlan}
\`\`\`
`;
}

main().catch((err) => {
  process.stderr.write(`bench:match failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
