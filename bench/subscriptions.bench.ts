import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { Session } from 'node:inspector/promises';
import { Worker } from 'node:worker_threads';
import { Client } from 'pg';
import { CpuProfile, ProfileWindow, stagesMarkdown } from './cpu-profile-stages';
import { machineInfo, percentile, startBenchServer, writeResults } from './bench-support';
import type { CrudJob, CrudResult } from './crud-load.worker';
import { SearchService } from '../src/fhir/search/search.service';
import { SubscriptionMatchJob } from '../src/referrals/subscriptions/subscription-match.job';
import { SubscriptionMatchesPending } from '../src/referrals/subscriptions/subscription-match-pending.repository';
import { SubscriptionMatchingListener } from '../src/referrals/subscriptions/subscription-matching.listener';
import { SubscriptionNotifications } from '../src/referrals/subscriptions/subscription-notification.repository';

/**
 * npm run bench:subscriptions — create throughput with rest-hook Subscriptions (issue 25). One
 * in-process server on a fresh embedded PostgreSQL; BENCH_CLIENTS (16) clients create Observations
 * for BENCH_SECONDS (20) from a worker thread. First without any Subscription (the baseline), then
 * with BENCH_SUBSCRIPTIONS (100) active ones of 10 hospital clients, BENCH_MATCHING (10) of them
 * (one per client) matching every create, payload application/fhir+json, delivered during the
 * window to a receiver in a child process on this machine (its CPU reported). Reports the ratio of
 * the two throughputs (target >= 0.8), the matching listener's time per write (the write path: the
 * in-memory decision and the one pending match's insert), the match job's time (off the write path: the
 * batched access statement and the notifications' insert) per batch and per write, and the lag from
 * the version's meta.lastUpdated (set in the write's transaction) to receipt, p50/p99, over every
 * notification of the window (the queue is drained after it, up to BENCH_DRAIN_SECONDS).
 * BENCH_WORKER_NODE=1: the API server enqueues only (JOBS_WORKERS=off) and a second process, a
 * worker node on the same database (subscriptions-worker.ts), delivers; results then go to
 * bench/results/subscriptions-worker-node.{json,md}.
 * BENCH_RESULT_NAME: another results file name (an A/B run).
 * BENCH_PROFILE=1: a V8 CPU profile of the bench process's main thread (the server, its match and
 * delivery workers; not the load thread) by stage in each window, and PostgreSQL's active
 * statements and wait events sampled every 50 ms (pg_stat_activity), appended to the Markdown.
 */
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 16);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 20);
const SUBSCRIPTIONS = Number(process.env.BENCH_SUBSCRIPTIONS ?? 100);
const MATCHING = Number(process.env.BENCH_MATCHING ?? 10);
const DRAIN_SECONDS = Number(process.env.BENCH_DRAIN_SECONDS ?? 300);
const OWNERS = 10;
const WORKER_NODE = process.env.BENCH_WORKER_NODE === '1';
const SEQUENTIAL = Number(process.env.BENCH_SEQUENTIAL ?? 100);
const CODE = 'bench-watched';
const PROFILE = process.env.BENCH_PROFILE === '1';
const nowUs = (): number => Number(process.hrtime.bigint() / 1000n);

/** Samples PostgreSQL's active statements of the bench database every 50 ms while `on`. */
class ActivitySampler {
  private readonly counts = new Map<string, number>();
  private samples = 0;
  private timer?: NodeJS.Timeout;
  private busy = false;
  constructor(readonly client: Client) {}
  start(): void {
    this.counts.clear();
    this.samples = 0;
    this.timer = setInterval(() => void this.sample(), 50);
  }
  stop(): { samples: number; top: { what: string; perSample: number }[] } {
    clearInterval(this.timer);
    const top = [...this.counts.entries()].sort((a, b) => b[1] - a[1]).slice(0, 20).map(([what, n]) => ({ what, perSample: r2(n / (this.samples || 1)) }));
    return { samples: this.samples, top };
  }
  private async sample(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const { rows } = await this.client.query<{ w: string; q: string }>(
        `SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') AS w, left(regexp_replace(query, '\\s+', ' ', 'g'), 90) AS q
           FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid()`,
      );
      this.samples++;
      for (const r of rows) this.counts.set(`${r.w} | ${r.q}`, (this.counts.get(`${r.w} | ${r.q}`) ?? 0) + 1);
    } finally {
      this.busy = false;
    }
  }
}

/** The receiver: answers 204, keeps receipt lag per notification id, reports its own CPU. */
const RECEIVER = `
const http = require('node:http');
const lags = new Map();
let posts = 0;
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const at = Date.now();
    posts++;
    try {
      const r = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      lags.set(String(req.headers['x-notification-id']), at - Date.parse(r.meta.lastUpdated));
    } catch {}
    res.writeHead(204).end();
  });
});
server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }));
process.on('message', () => process.send({ posts, lags: [...lags.values()], cpu: process.cpuUsage() }));
`;

interface ReceiverReport {
  posts: number;
  lags: number[];
  cpu: NodeJS.CpuUsage;
}

function load(job: CrudJob): Promise<CrudResult> {
  return new Promise<CrudResult>((resolve, reject) => {
    const worker = new Worker(join(__dirname, 'crud-load.worker.js'), { workerData: job });
    worker.once('message', resolve);
    worker.once('error', reject);
  });
}

function ask(child: ChildProcess): Promise<ReceiverReport> {
  return new Promise((resolve) => {
    child.once('message', (m) => resolve(m as ReceiverReport));
    child.send('report');
  });
}

const r2 = (n: number): number => Math.round(n * 100) / 100;

const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

/**
 * CPU (ms) the embedded PostgreSQL used so far: the postmaster's own and its reaped backends'
 * (cutime, cstime), plus its live children's. Undefined on a server not started by the bench.
 */
function postgresCpuMs(): number | undefined {
  const dir = process.env.DATABASE_URL ? undefined : process.env.EMBEDDED_PG_DIR;
  if (!dir) return undefined;
  const ticks = (pid: string, withChildren: boolean): { ppid: string; ticks: number } | undefined => {
    try {
      // Fields after the command (which may hold spaces): state ppid ... utime(14) stime(15) cutime(16) cstime(17).
      const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
      return { ppid: f[1], ticks: Number(f[11]) + Number(f[12]) + (withChildren ? Number(f[13]) + Number(f[14]) : 0) };
    } catch {
      return undefined;
    }
  };
  const postmaster = readFileSync(`${dir}/postmaster.pid`, 'utf8').split('\n')[0].trim();
  let total = ticks(postmaster, true)?.ticks ?? 0;
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid) || pid === postmaster) continue;
    const t = ticks(pid, false);
    if (t?.ppid === postmaster) total += t.ticks;
  }
  return (total * 1000) / CLOCK_TICKS;
}

async function main(): Promise<void> {
  process.env.SUBSCRIPTION_DELIVERY_CONCURRENCY ??= '8';
  // BENCH_WORKER_NODE=1: the API server enqueues only, a second process (a worker node) delivers.
  if (WORKER_NODE) process.env.JOBS_WORKERS = 'off';
  const server = await startBenchServer();
  let workerNode: ChildProcess | undefined;
  if (WORKER_NODE) {
    const url = (server.db.options as { url?: string }).url!;
    workerNode = spawn(process.execPath, [join(__dirname, 'subscriptions-worker.js')], { env: { ...process.env, DATABASE_URL: url, JOBS_WORKERS: 'on' }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    await new Promise<void>((resolve, reject) => {
      workerNode!.once('message', () => resolve());
      workerNode!.once('exit', (code) => reject(new Error(`the worker node exited (${code})`)));
    });
  }
  const receiver = spawn(process.execPath, ['-e', RECEIVER], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  try {
    const { port } = await new Promise<{ port: number }>((resolve) => receiver.once('message', (m) => resolve(m as { port: number })));
    const endpoint = `http://127.0.0.1:${port}/hook`;
    const headers = { Authorization: `Bearer ${server.token}`, 'Content-Type': 'application/fhir+json' };
    const patient = (await (await fetch(`${server.baseUrl}/fhir/Patient`, { method: 'POST', headers, body: JSON.stringify({ resourceType: 'Patient', name: [{ family: 'Bench' }], gender: 'female' }) })).json()) as { id: string };
    const createBody = JSON.stringify({
      resourceType: 'Observation',
      status: 'final',
      code: { coding: [{ system: 'urn:bench', code: CODE }] },
      subject: { reference: `Patient/${patient.id}` },
      valueQuantity: { value: 120, unit: 'mm[Hg]' },
    });
    const job = (maxSeconds: number): CrudJob => ({ mode: 'create', baseUrl: server.baseUrl, token: server.token, concurrency: CLIENTS, maxRequests: 10_000_000, maxSeconds, createBody });
    // Warm-up (JIT, pools, plans), then the baseline without Subscriptions.
    await load(job(3));
    // BENCH_PROFILE=1: the main thread's CPU profile and PostgreSQL's activity, per window.
    const windows: ProfileWindow[] = [];
    const activity: Record<string, ReturnType<ActivitySampler['stop']>> = {};
    let session: Session | undefined;
    let sampler: ActivitySampler | undefined;
    if (PROFILE) {
      session = new Session();
      session.connect();
      await session.post('Profiler.enable');
      await session.post('Profiler.start');
      const client = new Client({ connectionString: (server.db.options as { url?: string }).url });
      await client.connect();
      sampler = new ActivitySampler(client);
    }
    const profiled = async <T extends CrudResult>(kind: string, run: () => Promise<T>): Promise<T> => {
      sampler?.start();
      const fromUs = nowUs();
      const out = await run();
      windows.push({ kind, fromUs, toUs: nowUs(), requests: out.latencies.create?.length || 1 });
      if (sampler) activity[kind] = sampler.stop();
      return out;
    };
    const cpu0 = process.cpuUsage();
    const pg0 = postgresCpuMs();
    const baseline = await profiled('creates without Subscriptions', () => load(job(SECONDS)));
    const baselineCpu = process.cpuUsage(cpu0);
    const baselinePgMs = (postgresCpuMs() ?? 0) - (pg0 ?? 0);

    // 100 Subscriptions of 10 clients; one per client (10 in all) matches every create.
    const owners = await Promise.all(Array.from({ length: OWNERS }, (_, i) => server.tokenFor(`org-sub-${i}`)));
    for (let n = 0; n < SUBSCRIPTIONS; n++) {
      const owner = owners[n % OWNERS];
      const matching = n < MATCHING;
      const res = await fetch(`${server.baseUrl}/fhir/Subscription`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${owner}`, 'Content-Type': 'application/fhir+json' },
        body: JSON.stringify({
          resourceType: 'Subscription',
          status: 'requested',
          reason: 'bench',
          criteria: `Observation?code=urn:bench|${matching ? CODE : `other-${n}`}`,
          channel: { type: 'rest-hook', endpoint, payload: 'application/fhir+json', extension: [{ url: 'http://hie.example.org/fhir/StructureDefinition/subscription-secret', valueString: `bench-secret-${n}-0123456789` }] },
        }),
      });
      if (res.status !== 201) throw new Error(`Subscription ${n}: ${res.status} ${await res.text()}`);
    }
    // The matching listener's own time per write (in the write's transaction: the write path's share).
    const listener = server.app.get(SubscriptionMatchingListener);
    const matchMs: number[] = [];
    const handle = listener.handle.bind(listener);
    listener.handle = async (event) => {
      const t0 = performance.now();
      await handle(event);
      if (event.resourceType === 'Observation') matchMs.push(performance.now() - t0);
    };
    // The write path's steps: the one pending match's insert (and the matching statement, for criteria not decided in memory).
    const search = server.app.get(SearchService);
    const pending = server.app.get(SubscriptionMatchesPending);
    const steps = { writes: 0, candidates: 0, inSql: 0, jobs: 0, batches: 0, notifications: 0, versionsJudged: 0 };
    const writeEnqueueMs: number[] = [];
    const matchCriteriaMs: number[] = [];
    const add = pending.add.bind(pending);
    pending.add = async (tx, match) => {
      const t0 = performance.now();
      await add(tx, match);
      if (match.resourceType === 'Observation') {
        writeEnqueueMs.push(performance.now() - t0);
        steps.writes++;
        steps.candidates += match.candidates.length;
      }
    };
    const matchCriteria = search.matchCriteria.bind(search);
    search.matchCriteria = async (resourceType, id, candidates, tx) => {
      const t0 = performance.now();
      const matched = await matchCriteria(resourceType, id, candidates, tx);
      if (resourceType === 'Observation') {
        matchCriteriaMs.push(performance.now() - t0);
        steps.inSql += candidates.length;
      }
      return matched;
    };
    // The match job (off the write path): its time per batch, and within it the one access statement and the notifications' insert.
    const matchJob = server.app.get(SubscriptionMatchJob);
    const batchMs: number[] = [];
    const readableMs: number[] = [];
    const notifyEnqueueMs: number[] = [];
    const runBatch = matchJob.runBatch.bind(matchJob);
    matchJob.runBatch = async (batch) => {
      const t0 = performance.now();
      await runBatch(batch);
      batchMs.push(performance.now() - t0);
      steps.batches++;
      steps.jobs += batch.matches.length;
    };
    const readableVersions = search.readableVersions.bind(search);
    search.readableVersions = async (versions, tx) => {
      const t0 = performance.now();
      const out = await readableVersions(versions, tx);
      readableMs.push(performance.now() - t0);
      steps.versionsJudged += versions.length;
      return out;
    };
    const outbox = server.app.get(SubscriptionNotifications);
    const insertMany = outbox.insertMany.bind(outbox);
    outbox.insertMany = async (tx, data) => {
      const t0 = performance.now();
      await insertMany(tx, data);
      notifyEnqueueMs.push(performance.now() - t0);
      steps.notifications += data.length;
    };
    const sum = (list: number[]): number => list.reduce((a, b) => a + b, 0);
    const resetSteps = (): void => {
      for (const list of [matchMs, writeEnqueueMs, matchCriteriaMs, batchMs, readableMs, notifyEnqueueMs]) list.length = 0;
      for (const k of Object.keys(steps) as (keyof typeof steps)[]) steps[k] = 0;
    };
    /** The match job's cost, per batch and per write it served. */
    const matchJobCost = () => ({
      batches: steps.batches,
      jobsPerBatch: r2(steps.jobs / (steps.batches || 1)),
      batchMeanMs: mean(batchMs),
      perWriteMs: r2(sum(batchMs) / (steps.jobs || 1)),
      accessStatementMeanMs: mean(readableMs),
      accessStatementPerWriteMs: r2(sum(readableMs) / (steps.versionsJudged || 1)),
      notificationsInsertMeanMs: mean(notifyEnqueueMs),
      notificationsPerWrite: r2(steps.notifications / (steps.jobs || 1)),
    });
    const mean = (list: number[]): number => r2(list.reduce((a, b) => a + b, 0) / (list.length || 1));
    await load(job(3));
    /** Pending matches not yet judged and notifications not yet delivered. */
    const open = async (): Promise<number> => (await pending.pending()).open + (await outbox.pending());
    // The warm-up's notifications are delivered before the window starts.
    const drained = async (): Promise<void> => {
      for (let i = 0; i < DRAIN_SECONDS * 2; i++) {
        if (!(await open())) return;
        await new Promise((r) => setTimeout(r, 500));
      }
    };
    await drained();
    // Matching cost without queueing for the CPU: one client, BENCH_SEQUENTIAL creates.
    resetSteps();
    await load({ ...job(60), concurrency: 1, maxRequests: SEQUENTIAL });
    const sequentialMatch = [...matchMs].sort((a, b) => a - b);
    const oneClientSteps = { enqueueMeanMs: mean(writeEnqueueMs) };
    await drained();
    const oneClientJob = matchJobCost();
    resetSteps();
    const before = await ask(receiver);
    const cpu1 = process.cpuUsage();
    const pg1 = postgresCpuMs();
    const withSubs = await profiled(`creates with ${SUBSCRIPTIONS} Subscriptions, ${MATCHING} matching`, () => load(job(SECONDS)));
    const withSubsCpu = process.cpuUsage(cpu1);
    const withSubsPgMs = (postgresCpuMs() ?? 0) - (pg1 ?? 0);
    const during = await ask(receiver);
    const expected = withSubs.latencies.create?.length ?? 0;
    const drainStart = Date.now();
    let after = during;
    // The drain alone (no creates): per notification delivered, in the profile's third window.
    sampler?.start();
    const drainFromUs = nowUs();
    const drainCpu0 = process.cpuUsage();
    const drainPg0 = postgresCpuMs();
    while (Date.now() - drainStart < DRAIN_SECONDS * 1000) {
      const pending = await open();
      after = await ask(receiver);
      if (!pending) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    const drainCpu = process.cpuUsage(drainCpu0);
    const drainPgMs = (postgresCpuMs() ?? 0) - (drainPg0 ?? 0);
    const drainReceiverMs = (after.cpu.user + after.cpu.system - during.cpu.user - during.cpu.system) / 1000;
    const drainDelivered = after.posts - during.posts;
    const drainKind = 'the drain after the window (per notification delivered)';
    windows.push({ kind: drainKind, fromUs: drainFromUs, toUs: nowUs(), requests: after.posts - during.posts || 1 });
    if (sampler) activity[drainKind] = sampler.stop();
    const drainSeconds = (Date.now() - drainStart) / 1000;
    const lags = after.lags.slice(before.lags.length).sort((a, b) => a - b);
    const sortedMatch = [...matchMs].sort((a, b) => a - b);
    const rate = (r: CrudResult) => (r.latencies.create?.length ?? 0) / r.seconds;
    const p = (r: CrudResult, q: number) => r2(percentile([...(r.latencies.create ?? [])].sort((a, b) => a - b), q));
    const result = {
      machine: { ...((await machineInfo(server.db)) as { date: string; cores: number; cpu: string; memoryGiB: number; node: string; postgres: string }), loadavg: loadavg().map(r2) },
      settings: { workerNode: WORKER_NODE, clients: CLIENTS, seconds: SECONDS, subscriptions: SUBSCRIPTIONS, matchingPerWrite: MATCHING, owners: OWNERS, deliveryConcurrency: Number(process.env.SUBSCRIPTION_DELIVERY_CONCURRENCY) },
      baseline: { creates: baseline.latencies.create?.length ?? 0, perSecond: r2(rate(baseline)), p50: p(baseline, 50), p99: p(baseline, 99), errors: baseline.errors.length, benchProcessCpuMsPerCreate: r2((baselineCpu.user + baselineCpu.system) / 1000 / (baseline.latencies.create?.length || 1)), postgresCpuMsPerCreate: r2(baselinePgMs / (baseline.latencies.create?.length || 1)) },
      withSubscriptions: { creates: expected, perSecond: r2(rate(withSubs)), p50: p(withSubs, 50), p99: p(withSubs, 99), errors: withSubs.errors.length, benchProcessCpuMsPerCreate: r2((withSubsCpu.user + withSubsCpu.system) / 1000 / (expected || 1)), postgresCpuMsPerCreate: r2(withSubsPgMs / (expected || 1)) },
      ratio: r2(rate(withSubs) / rate(baseline)),
      matchingOneClient: { writes: sequentialMatch.length, meanMs: r2(sequentialMatch.reduce((a, b) => a + b, 0) / (sequentialMatch.length || 1)), p50Ms: r2(percentile(sequentialMatch, 50)), p99Ms: r2(percentile(sequentialMatch, 99)) },
      matching: { writes: sortedMatch.length, meanMs: r2(sortedMatch.reduce((a, b) => a + b, 0) / (sortedMatch.length || 1)), p50Ms: r2(percentile(sortedMatch, 50)), p99Ms: r2(percentile(sortedMatch, 99)) },
      // The write path per write at 16 clients: candidates whose criteria were decided in memory (their access left to the match job), tested by the matching statement in the write, and the pending match's insert.
      perWrite: { accessLeftToJob: r2(steps.candidates / (steps.writes || 1)), inSql: r2(steps.inSql / (steps.writes || 1)), of: SUBSCRIPTIONS, matchCriteriaMeanMs: mean(matchCriteriaMs), enqueueMeanMs: mean(writeEnqueueMs), oneClient: oneClientSteps },
      // The match job (off the write path), during the window and the drain after it / at one client.
      matchJob: { ...matchJobCost(), oneClient: oneClientJob },
      notifications: {
        expected: expected * MATCHING,
        receivedDuringWindow: during.lags.length - before.lags.length,
        receivedAfterDrain: lags.length,
        drainSeconds: r2(drainSeconds),
        lagP50Ms: r2(percentile(lags, 50)),
        lagP99Ms: r2(percentile(lags, 99)),
      },
      // The drain alone (no creates): CPU per notification delivered.
      drainCpuMsPerNotification: { delivered: drainDelivered, benchProcess: r2((drainCpu.user + drainCpu.system) / 1000 / (drainDelivered || 1)), postgres: r2(drainPgMs / (drainDelivered || 1)), receiver: r2(drainReceiverMs / (drainDelivered || 1)) },
      receiverCpuMs: r2((after.cpu.user + after.cpu.system) / 1000),
      receiverCpuMsPerNotification: r2((after.cpu.user + after.cpu.system) / 1000 / (after.posts || 1)),
    };
    const md = [
      `# bench:subscriptions (${result.machine.date})`,
      '',
      `Machine: ${result.machine.cores} cores (${result.machine.cpu}), ${result.machine.memoryGiB} GiB, Node ${result.machine.node}, ${result.machine.postgres}; load average at the end ${result.machine.loadavg.join(' / ')}.`,
      `${CLIENTS} clients creating Observations for ${SECONDS} s each; ${SUBSCRIPTIONS} active rest-hook Subscriptions of ${OWNERS} clients, ${MATCHING} matching every create (payload FHIR JSON, signed), delivered during the window to a receiver process on this machine (delivery concurrency ${result.settings.deliveryConcurrency}${WORKER_NODE ? ', by a separate worker node process; the API server enqueues only' : ', by the API server itself'}).`,
      '',
      '| run | creates | creates/s | p50 ms | p99 ms | errors | bench process CPU ms/create | PostgreSQL CPU ms/create |',
      '|---|---|---|---|---|---|---|---|',
      `| no Subscriptions | ${result.baseline.creates} | ${result.baseline.perSecond} | ${result.baseline.p50} | ${result.baseline.p99} | ${result.baseline.errors} | ${result.baseline.benchProcessCpuMsPerCreate} | ${result.baseline.postgresCpuMsPerCreate} |`,
      `| ${SUBSCRIPTIONS} Subscriptions, ${MATCHING} matching | ${result.withSubscriptions.creates} | ${result.withSubscriptions.perSecond} | ${result.withSubscriptions.p50} | ${result.withSubscriptions.p99} | ${result.withSubscriptions.errors} | ${result.withSubscriptions.benchProcessCpuMsPerCreate} | ${result.withSubscriptions.postgresCpuMsPerCreate} |`,
      '',
      `**Ratio ${result.ratio}** (target >= 0.8).`,
      '',
      `Matching on the write path (the pre-commit listener: the in-memory prefilter, the matching statement for criteria it cannot decide, the one pending match's insert) per write, at ${CLIENTS} clients: mean ${result.matching.meanMs} ms, p50 ${result.matching.p50Ms} ms, p99 ${result.matching.p99Ms} ms over ${result.matching.writes} writes; at one client (no queueing for the CPU): mean ${result.matchingOneClient.meanMs} ms, p50 ${result.matchingOneClient.p50Ms} ms, p99 ${result.matchingOneClient.p99Ms} ms over ${result.matchingOneClient.writes} writes. Per write at ${CLIENTS} clients, of ${SUBSCRIPTIONS} candidates: ${result.perWrite.accessLeftToJob} decided in memory (access left to the match job), ${result.perWrite.inSql} tested by the matching statement in the write (${result.perWrite.matchCriteriaMeanMs} ms); the pending match's hand-off ${result.perWrite.enqueueMeanMs} ms on average (at one client ${result.perWrite.oneClient.enqueueMeanMs} ms; the row itself is written with the write's audit rows in one statement before COMMIT).`,
      '',
      `Match job (off the write path; window and drain): ${result.matchJob.batches} batches of ${result.matchJob.jobsPerBatch} writes on average, ${result.matchJob.batchMeanMs} ms per batch, ${result.matchJob.perWriteMs} ms per write served; the one access statement ${result.matchJob.accessStatementMeanMs} ms per batch (${result.matchJob.accessStatementPerWriteMs} ms per write), the notifications' insert ${result.matchJob.notificationsInsertMeanMs} ms per batch, ${result.matchJob.notificationsPerWrite} notifications per write. At one client: ${result.matchJob.oneClient.batches} batches of ${result.matchJob.oneClient.jobsPerBatch}, ${result.matchJob.oneClient.perWriteMs} ms per write served, access statement ${result.matchJob.oneClient.accessStatementMeanMs} ms per batch.`,
      '',
      `Notifications: ${result.notifications.expected} expected, ${result.notifications.receivedDuringWindow} received during the window, ${result.notifications.receivedAfterDrain} after draining (${result.notifications.drainSeconds} s); lag from meta.lastUpdated to receipt p50 ${result.notifications.lagP50Ms} ms, p99 ${result.notifications.lagP99Ms} ms.`,
      `The drain alone (no creates), CPU per notification delivered (${result.drainCpuMsPerNotification.delivered}): bench process ${result.drainCpuMsPerNotification.benchProcess} ms, PostgreSQL ${result.drainCpuMsPerNotification.postgres} ms, receiver ${result.drainCpuMsPerNotification.receiver} ms.`,
      `Receiver CPU: ${result.receiverCpuMs} ms in all, ${result.receiverCpuMsPerNotification} ms per notification. The bench process CPU is the server and the load thread together.`,
      '',
    ];
    if (session) {
      const { profile } = (await session.post('Profiler.stop')) as { profile: CpuProfile };
      session.disconnect();
      await sampler?.client.end();
      md.push(
        '# Where the CPU went (BENCH_PROFILE=1)',
        '',
        "V8 samples of the bench process's main thread (the server and its match and delivery workers; the load thread not included), per create of each window (per notification in the drain), by stage and by function (self time).",
        '',
        stagesMarkdown(profile, windows, ''),
        '## PostgreSQL activity (pg_stat_activity every 50 ms; active backends per sample, by wait event and statement)',
        '',
        ...Object.entries(activity).flatMap(([kind, a]) => [`### ${kind} (${a.samples} samples)`, '', '| backends per sample | wait | statement |', '|---|---|---|', ...a.top.map((t) => `| ${t.perSample} | ${t.what.split(' | ')[0]} | \`${t.what.slice(t.what.indexOf(' | ') + 3).replace(/\|/g, '\\|').replace(/`/g, "'")}\` |`), '']),
      );
    }
    writeResults(process.env.BENCH_RESULT_NAME ?? (WORKER_NODE ? 'subscriptions-worker-node' : 'subscriptions'), result, md.join('\n'));
  } finally {
    workerNode?.kill('SIGTERM');
    receiver.kill('SIGTERM');
    await server.close();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
