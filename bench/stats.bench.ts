import { readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import type { Bundle, BundleEntry, Resource } from '@medplum/fhirtypes';
import { Client } from 'pg';
import { ClientRegistrationRepository } from '../src/auth/client-registration.repository';
import { APP_CONFIG, AppConfig } from '../src/config/app.config';
import { CREDENTIALS_FILE } from '../src/database/embedded-postgres';
import { SystemAccess } from '../src/fhir/pipeline/system-access';
import { explainPatientAggregate } from '../src/fhir/search/patient-aggregate.query';
import { aggregateQuery, EvaluateMeasureOperation } from '../src/public-health/measure-evaluation.operation';
import { loadShippedMeasures, MeasureSpec } from '../src/public-health/measure-definitions';
import { reportingPeriod } from '../src/public-health/measure-period';
import { SyntheticDataGenerator } from '../src/synthetic/synthetic-data.generator';
import { BenchServer, machineInfo, percentile, startBenchServer, writeResults } from './bench-support';

/**
 * npm run bench:stats — coverage statistics (`$evaluate-measure`, docs/public-health.md) on
 * BENCH_PATIENTS (default 100,000) lean generated patients (Patient, Coverage, Immunizations,
 * Conditions; every tenth patient with a Consent permitting PUBHLTH), loaded once through the real
 * write path into a persistent embedded PostgreSQL (BENCH_PG_DIR, default ./data/bench-stats-postgres;
 * BENCH_LOAD_ONLY=1 loads and stops, a rerun finds the data and an interrupted load resumes). Then,
 * for statistics.respectOptOut false and true (a server start each), every shipped Measure over a
 * year: latency of the HTTP operation (p50, p95 of BENCH_RUNS) and the EXPLAIN (ANALYZE, BUFFERS)
 * of its aggregate statement.
 */
const PATIENTS = Number(process.env.BENCH_PATIENTS ?? 100_000);
const PG_DIR = process.env.BENCH_PG_DIR ?? join(process.cwd(), 'data', 'bench-stats-postgres');
const PATIENTS_PER_BUNDLE = 50;
const LOAD_CLIENTS = Number(process.env.BENCH_LOAD_CLIENTS ?? 2);
const RUNS = Number(process.env.BENCH_RUNS ?? 7);
const RESULTS_NAME = process.env.BENCH_RESULTS_NAME ?? 'stats';
const SEED = 26;
const PERIOD = { periodStart: '2024-01-01', periodEnd: '2024-12-31' };
const LEAN = new Set(['Patient', 'Coverage', 'Immunization', 'Condition']);

async function main(): Promise<void> {
  let server = await startBenchServer({ persistentPgDir: PG_DIR });
  const load = await loadPatients(server);
  if (load.loaded) await asSuperuser('VACUUM ANALYZE');
  if (process.env.BENCH_LOAD_ONLY === '1') {
    await server.close();
    return;
  }
  const dataset: { resource_type: string; n: number }[] = await server.db.query(
    `SELECT resource_type, count(*)::int AS n FROM resource WHERE NOT deleted AND resource_type IN ('Patient', 'Coverage', 'Immunization', 'Condition', 'Consent') GROUP BY 1 ORDER BY 1`,
  );
  const machine = await machineInfo(server.db);
  await server.close();

  const runs = [];
  for (const respectOptOut of [false, true]) {
    process.env.STATISTICS_RESPECT_OPT_OUT = String(respectOptOut);
    server = await startBenchServer({ persistentPgDir: PG_DIR });
    const token = await agencyToken(server);
    const config = server.app.get<AppConfig>(APP_CONFIG);
    const ctx = respectOptOut ? await server.app.get(SystemAccess).mintFor('PUBHLTH') : await server.app.get(SystemAccess).mint('aggregate-statistics');
    const operation = server.app.get(EvaluateMeasureOperation);
    const period = reportingPeriod(PERIOD.periodStart, PERIOD.periodEnd);
    for (const shipped of loadShippedMeasures()) {
      for (const spec of [shipped, twoStratifiers(shipped)]) {
        const id = spec.measure.id!;
        const variant = spec === shipped ? 'shipped' : 'two stratifiers';
        // The shipped Measure over HTTP (the whole operation); the bench-only variant in-process through the operation's own report().
        const url = `${server.baseUrl}/fhir/Measure/${id}/$evaluate-measure?${new URLSearchParams(PERIOD)}`;
        const evaluate = async (): Promise<{ ms: number; denominator?: number }> => {
          const started = performance.now();
          if (spec !== shipped) {
            const report = await operation.report(spec, period, ctx, server.db.manager);
            return { ms: performance.now() - started, denominator: report.group?.[0]?.population?.[0]?.count };
          }
          const res = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });
          const body = (await res.json()) as { group?: { population?: { count?: number }[] }[] };
          if (res.status !== 200) throw new Error(`${id}: ${res.status} ${JSON.stringify(body).slice(0, 300)}`);
          return { ms: performance.now() - started, denominator: body.group?.[0]?.population?.[0]?.count };
        };
        const first = await evaluate();
        const samples: number[] = [];
        for (let i = 0; i < RUNS; i++) samples.push((await evaluate()).ms);
        samples.sort((a, b) => a - b);
        const codes = [...new Set(spec.stratifiers.flat())];
        const plan = await explainPatientAggregate(ctx, server.db.manager, aggregateQuery(spec, codes, period, config.statistics));
        const row = {
          respectOptOut,
          measure: id,
          variant,
          stratifiers: spec.stratifiers.map((s) => s.join(' x ')),
          counted: first.denominator ?? null,
          p50: Math.round(percentile(samples, 50)),
          p95: Math.round(percentile(samples, 95)),
          max: Math.round(samples[samples.length - 1]),
          sqlMs: Number(/Execution Time: ([\d.]+) ms/.exec(plan)?.[1] ?? NaN),
          load1: Math.round(loadavg()[0] * 10) / 10,
          plan,
        };
        process.stdout.write(`${id} (${variant}) respectOptOut=${respectOptOut}: p50 ${row.p50} ms p95 ${row.p95} ms (SQL ${row.sqlMs} ms), load ${row.load1}\n`);
        runs.push(row);
      }
    }
    await server.close();
  }
  const json = { machine, loadAverage: loadavg(), dataset, load, period: PERIOD, runs: runs.map(({ plan: _plan, ...r }) => r) };
  writeResults(RESULTS_NAME, json, markdown(json));
  writeFileSync(
    join(process.cwd(), 'bench', 'results', `${RESULTS_NAME}-plans.md`),
    `# EXPLAIN (ANALYZE, BUFFERS) of the aggregate statements (${machine.date})\n\n${runs
      .map((r) => `## ${r.measure} (${r.variant}), respectOptOut=${r.respectOptOut} (${r.sqlMs} ms)\n\n\`\`\`\n${r.plan}\n\`\`\``)
      .join('\n\n')}\n`,
  );
}

function markdown(json: { machine: Record<string, unknown>; loadAverage: number[]; dataset: { resource_type: string; n: number }[]; runs: Record<string, unknown>[] }): string {
  const m = json.machine;
  return [
    `# bench:stats — $evaluate-measure (${m.date})`,
    '',
    `Machine: ${m.cores} cores (${m.cpu}), ${m.memoryGiB} GiB, Node ${m.node}, ${m.postgres}; load average at the end ${json.loadAverage.map((l) => l.toFixed(1)).join(' ')}.`,
    `Data: ${json.dataset.map((d) => `${d.n} ${d.resource_type}`).join(', ')}. Period ${PERIOD.periodStart}..${PERIOD.periodEnd}; ${RUNS} sequential runs after one warm-up, one client. Variant \`shipped\`: the Measure as shipped, over HTTP; \`two stratifiers\`: the issue's bench line, the components of the Measure's first pair as two single stratifiers, through the operation's report() in-process (no HTTP, token or audit).`,
    '',
    '| Measure | variant | respectOptOut | stratifiers | counted | p50 ms | p95 ms | SQL ms (EXPLAIN ANALYZE) | load 1 min |',
    '|---|---|---|---|---|---|---|---|---|',
    ...json.runs.map((r) => `| ${r.measure} | ${r.variant} | ${r.respectOptOut} | ${(r.stratifiers as string[]).join(', ')} | ${r.counted ?? 'withheld'} | ${r.p50} | ${r.p95} | ${r.sqlMs} | ${r.load1} |`),
    '',
  ].join('\n');
}

/**
 * The issue's bench line ("each measure with two stratifiers"): a bench-only variant of a shipped
 * Measure whose stratifiers are the two components of its first pair, each on its own (region and
 * the measure's main characteristic). Not a request parameter: a client choosing which stratifiers
 * a report has could publish a margin that the full report withholds (docs/public-health.md).
 */
function twoStratifiers(spec: MeasureSpec): MeasureSpec {
  const pair = spec.stratifiers.find((s) => s.length === 2);
  if (!pair) throw new Error(`${spec.measure.id}: no pair stratifier to take two stratifiers from`);
  return { ...spec, stratifiers: pair.map((code) => [code]) };
}

/** A public-health client without clinical access (the statistics role), and its token. */
async function agencyToken(server: BenchServer): Promise<string> {
  const clientId = `bench-agency-${Date.now()}`;
  const { secret } = await server.app.get(ClientRegistrationRepository).create({
    clientId,
    name: 'bench agency',
    organization: 'org-bench-agency',
    role: 'public-health',
    scopes: ['system/*.rs'],
    purposes: ['PUBHLTH'],
    withSecret: true,
  });
  const res = await fetch(`${server.baseUrl}/oauth2/token`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', client_id: clientId, client_secret: secret!, scope: 'system/*.rs' }),
  });
  return ((await res.json()) as { access_token: string }).access_token;
}

/** Lean records of each generated patient (no Encounters or Observations), every tenth with a PUBHLTH permit. */
function* leanBundles(from: number): Generator<{ bundle: Bundle; patients: number }> {
  const gen = new SyntheticDataGenerator({ seed: SEED, patients: PATIENTS, organizations: 20, startYear: 2018, endYear: 2025, idPrefix: 'stat' });
  let entries: BundleEntry[] = [];
  let count = 0;
  let p = -1;
  for (const resource of gen.resources()) {
    if (resource.resourceType === 'Patient') {
      p++;
      if (p >= from && count === PATIENTS_PER_BUNDLE) {
        yield { bundle: { resourceType: 'Bundle', type: 'transaction', entry: entries }, patients: count };
        entries = [];
        count = 0;
      }
      if (p >= from) count++;
    }
    // The directory (Organizations, before patient 0) goes with the first Bundle.
    if ((p < from && !(p === -1 && from === 0)) || (p >= 0 && !LEAN.has(resource.resourceType))) continue;
    const lean: Resource = resource.resourceType === 'Condition' ? { ...resource, encounter: undefined } : resource;
    entries.push({ resource: lean, request: { method: 'PUT', url: `${lean.resourceType}/${lean.id}` } });
    if (resource.resourceType === 'Patient' && p % 10 === 0) {
      const consent = {
        resourceType: 'Consent',
        id: `${resource.id}-pubhlth`,
        status: 'active',
        scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
        category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
        patient: { reference: `Patient/${resource.id}` },
        policyRule: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'OPTOUT' }] },
        provision: { type: 'permit', purpose: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActReason', code: 'PUBHLTH' }] },
      } as Resource;
      entries.push({ resource: consent, request: { method: 'PUT', url: `Consent/${consent.id}` } });
    }
  }
  if (count) yield { bundle: { resourceType: 'Bundle', type: 'transaction', entry: entries }, patients: count };
}

async function loadPatients(server: BenchServer): Promise<{ loaded: number; seconds: number; resourcesPerSecond: number; patients: number }> {
  const [{ n: present }] = await server.db.query(`SELECT count(*)::int AS n FROM resource WHERE resource_type = 'Patient' AND NOT deleted`);
  // Patients are loaded in order and a Bundle is atomic: resume after the last whole Bundle.
  const from = Math.floor(present / PATIENTS_PER_BUNDLE) * PATIENTS_PER_BUNDLE;
  if (from >= PATIENTS) {
    process.stdout.write(`load: ${present} patients already stored in ${PG_DIR}\n`);
    return { loaded: 0, seconds: 0, resourcesPerSecond: 0, patients: present };
  }
  process.stdout.write(`load: ${present} patients stored, loading from patient ${from} to ${PATIENTS} with ${LOAD_CLIENTS} clients\n`);
  const started = performance.now();
  let token = server.token;
  let tokenAt = Date.now();
  let loaded = 0;
  let patients = from;
  let last = started;
  const bundles = leanBundles(from);
  const worker = async (): Promise<void> => {
    for (let next = bundles.next(); !next.done; next = bundles.next()) {
      if (Date.now() - tokenAt > 40 * 60_000) {
        tokenAt = Date.now();
        token = await server.newToken();
      }
      const res = await fetch(`${server.baseUrl}/fhir`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/fhir+json', Prefer: 'return=minimal' },
        body: JSON.stringify(next.value.bundle),
      });
      if (res.status !== 200) throw new Error(`load: ${res.status} ${(await res.text()).slice(0, 300)}`);
      await res.arrayBuffer().catch(() => undefined);
      loaded += next.value.bundle.entry!.length;
      patients += next.value.patients;
      if (performance.now() - last > 15_000) {
        last = performance.now();
        const rate = loaded / ((last - started) / 1000);
        process.stdout.write(`load: ${patients}/${PATIENTS} patients, ${Math.round(rate)} resources/s, load average ${loadavg()[0].toFixed(1)}\n`);
      }
    }
  };
  await Promise.all(Array.from({ length: LOAD_CLIENTS }, worker));
  const seconds = (performance.now() - started) / 1000;
  process.stdout.write(`load: ${loaded} resources in ${Math.round(seconds)} s\n`);
  return { loaded, seconds: Math.round(seconds), resourcesPerSecond: Math.round(loaded / seconds), patients };
}

/** VACUUM ANALYZE needs the embedded cluster's superuser (the server's role does not own every table). */
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

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack}\n`);
  process.exit(1);
});
