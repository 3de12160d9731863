import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { cpus, loadavg } from 'node:os';
import { fork } from 'node:child_process';
import type { ClientOutcome } from './ingest-client';
import type { Bundle, Resource } from '@medplum/fhirtypes';
import { from as copyFrom } from 'pg-copy-streams';
import { Client } from 'pg';
import { SyntheticDataGenerator } from '../src/synthetic/synthetic-data.generator';
import { ResourceValidator } from '../src/fhir/validation/resource.validator';
import { SearchIndexWriter } from '../src/fhir/search/search-index.writer';
import { patientCompartmentsOf } from '../src/fhir/storage/patient-compartment';
import { loadAppConfig } from '../src/config/app.config';
import { machineInfo, postgresCpuMs, startBenchServer, writeResults } from './bench-support';

/**
 * npm run bench:ingest — loads the Synthea transaction Bundles (../shared/data/synthea; the
 * synthetic generator when absent) over HTTP with N parallel clients, verifies the stored counts
 * equal the files' counts, and measures in the same run a raw-PostgreSQL baseline: COPY of the same
 * resource JSON into a bare jsonb table. Efficiency = our rate / raw rate.
 */
const SYNTHEA = process.env.SYNTHEA_DIR ?? join(process.cwd(), '..', 'shared', 'data', 'synthea');
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 4);

async function main(): Promise<void> {
  const loadAtStart = round(loadavg()[0], 2);
  const server = await startBenchServer();
  const { bundles, source, bytes } = loadBundles();
  const expected = new Map<string, number>();
  for (const b of bundles) for (const e of b.entry ?? []) expected.set(e.resource!.resourceType, (expected.get(e.resource!.resourceType) ?? 0) + 1);
  const resourceCount = [...expected.values()].reduce((a, b) => a + b, 0);
  process.stdout.write(`ingest: ${bundles.length} bundles, ${resourceCount} resources from ${source}, ${CLIENTS} clients\n`);

  // Information bundles (organizations, practitioners) first: patient bundles refer to them.
  const info = bundles.filter((b) => b.type === 'batch');
  const patients = bundles.filter((b) => b.type !== 'batch');
  const client = fork(join(__dirname, 'ingest-client.js'), { stdio: 'inherit', serialization: 'advanced' });
  const message = <T>(): Promise<T> => new Promise((resolve) => client.once('message', (m) => resolve(m as T)));
  const ready = message<'ready'>();
  client.send({ baseUrl: server.baseUrl, token: server.token, info: info.map(textOf), patients: patients.map(textOf), clients: CLIENTS });
  await ready;
  const done = message<ClientOutcome>();
  const cpuBefore = cpuSeconds();
  client.send('go');
  const outcome = await done;
  const cpuAfter = cpuSeconds();
  const { errors, infoSeconds, seconds } = outcome;
  const cpu = { node: cpuAfter.node - cpuBefore.node, postgres: cpuAfter.postgres - cpuBefore.postgres };

  const stored = new Map<string, number>(
    (await server.db.query(`SELECT resource_type, count(*)::int AS n FROM resource WHERE NOT deleted GROUP BY 1`)).map(
      (r: { resource_type: string; n: number }) => [r.resource_type, r.n],
    ),
  );
  const mismatches = [...expected].filter(([type, n]) => stored.get(type) !== n).map(([type, n]) => `${type}: files ${n}, stored ${stored.get(type) ?? 0}`);
  const [{ size }] = await server.db.query(`SELECT pg_database_size(current_database())::bigint AS size`);
  // Rows and size per table: where the writes (and the space) go.
  const tables: { table: string; rows: number; mib: number }[] = (
    await server.db.query(
      `SELECT relname AS table, n_live_tup::bigint AS rows, pg_total_relation_size(relid)::bigint AS bytes
         FROM pg_stat_user_tables WHERE relname = 'resource' OR relname = 'resource_history' OR relname LIKE 'search\\_%' ORDER BY bytes DESC`,
    )
  ).map((r: { table: string; rows: string; bytes: string }) => ({ table: r.table, rows: Number(r.rows), mib: round(Number(r.bytes) / 2 ** 20) }));

  const tx = await transactionScaling(server.baseUrl, server.token);
  const raw = await rawCopyBaseline(bundles);
  const profile = profileStages(bundles);
  const rate = resourceCount / seconds;
  const patientResources = patients.reduce((a, b) => a + (b.entry?.length ?? 0), 0);
  const result = {
    machine: await machineInfo(server.db),
    source,
    clients: CLIENTS,
    bundles: bundles.length,
    resources: resourceCount,
    seconds: round(seconds),
    resourcesPerSecond: round(rate),
    infoBundlesSeconds: round(infoSeconds),
    patientBundlesResourcesPerSecond: round(patientResources / (seconds - infoSeconds)),
    megabytesPerSecond: round(bytes / 2 ** 20 / seconds),
    databaseMiB: round(Number(size) / 2 ** 20),
    rawCopyResourcesPerSecond: round(raw),
    efficiency: round(rate / raw, 3),
    cpuSecondsNode: round(cpu.node),
    cpuSecondsPostgres: round(cpu.postgres),
    cpuMsPerResource: round(((cpu.node + cpu.postgres) * 1000) / resourceCount, 3),
    // The server's event loop is one core; PostgreSQL takes the rest.
    cpuBoundCeilingResourcesPerSecond: round(Math.min(resourceCount / cpu.node, (cpus().length * resourceCount) / (cpu.node + cpu.postgres))),
    loadAverageAtStart: loadAtStart,
    errors: errors.length,
    errorSamples: errors.slice(0, 10),
    countMismatches: mismatches,
    tables,
    transactionScaling: tx,
    profileMsPerResource: profile,
  };
  const scalingMd = tx.length
    ? `Transaction size scaling (one transaction: a Patient and N-1 Observations referring to it by urn:uuid; median of ${tx[0].runs.length} runs, no other requests to the server):

| entries | median seconds | entries/s | runs (s) |
|---|---|---|---|
${tx.map((t) => `| ${t.entries} | ${t.seconds} | ${t.perSecond} | ${t.runs.join(', ')} |`).join('\n')}

Per-entry rate at 10,000 entries / at 1,000: **${round(tx[1].perSecond / tx[0].perSecond, 2)}** (1 = linear; below 0.8 would mean the cost per entry grows with the size).`
    : 'Transaction size scaling: not measured in this run (BENCH_SCALING_REPEATS=0).';
  writeResults(
    process.env.BENCH_RESULTS_NAME ?? 'ingest',
    result,
    `# Ingest benchmark (${result.machine.date})

Machine: ${result.machine.cores} cores (${result.machine.cpu}), ${result.machine.memoryGiB} GiB, Node ${result.machine.node}, ${result.machine.postgres}.
Data: ${source}: ${bundles.length} bundles, ${resourceCount} resources, ${round(bytes / 2 ** 20)} MiB; ${CLIENTS} parallel HTTP clients in a child process (full validation with required terminology bindings and HIE profiles, patient compartments, search indexing; audit stage runs, its log line is below LOG_LEVEL=${process.env.LOG_LEVEL}). Shared machine: other work ran at the same time (load average below), so the CPU seconds are the steadier figure.

| measure | value |
|---|---|
| resources/s | ${result.resourcesPerSecond} |
| of which: information bundles (batch, conditional creates, sequential) | ${result.infoBundlesSeconds} s |
| patient bundles alone (transactions, ${CLIENTS} clients) | ${result.patientBundlesResourcesPerSecond} resources/s |
| MB/s | ${result.megabytesPerSecond} |
| wall time | ${result.seconds} s |
| database size after load | ${result.databaseMiB} MiB |
| raw COPY baseline (same JSON into a bare jsonb table, WAL-logged, median of 3) | ${result.rawCopyResourcesPerSecond} resources/s |
| **ingest efficiency (ours / raw)** | **${result.efficiency}** |
| CPU seconds: server process / PostgreSQL | ${result.cpuSecondsNode} / ${result.cpuSecondsPostgres} |
| CPU ms per resource (server + PostgreSQL) | ${result.cpuMsPerResource} |
| CPU-bound ceiling on a dedicated machine of these cores (estimate: min(1000 / server ms, cores × 1000 / (server + PostgreSQL) ms)) | ${result.cpuBoundCeilingResourcesPerSecond} resources/s |
| load average when the run started (shared machine) | ${loadAtStart} |
| errors | ${errors.length} |
| count mismatches (files vs stored) | ${mismatches.length ? mismatches.join('; ') : 'none'} |

Rows and size per table after the load (statistics, approximate row counts):

| table | rows | MiB | rows per resource |
|---|---|---|---|
${tables.map((t) => `| ${t.table} | ${t.rows} | ${t.mib} | ${round(t.rows / resourceCount, 1)} |`).join('\n')}

${scalingMd}

Where time goes (in process, single-threaded, ms per resource over the first 5,000 resources): ${Object.entries(profile).map(([k, v]) => `${k} ${v}`).join(', ')}. The server process spent ${round((cpu.node * 1000) / resourceCount, 3)} ms of CPU per resource in all (these plus HTTP and JSON parsing of the Bundles, the pipeline per entry, building SQL parameters, garbage collection; the clients run in a child process and are not counted), PostgreSQL ${round((cpu.postgres * 1000) / resourceCount, 3)} ms (inserting resource, history and index rows with their B-tree and GIN indexes, WAL).

`,
  );
  await server.close();
  if (errors.length || mismatches.length) {
    process.stderr.write(`FAILED: ${errors.length} errors (${errors.slice(0, 3).join(' | ')}), mismatches: ${mismatches.join('; ')}\n`);
    process.exit(1);
  }
}

/** The file's own bytes where there is one (what a client would send), else the serialized Bundle. */
const texts = new WeakMap<Bundle, string>();
function textOf(b: Bundle): string {
  return texts.get(b) ?? JSON.stringify(b);
}

function loadBundles(): { bundles: Bundle[]; source: string; bytes: number } {
  if (existsSync(SYNTHEA)) {
    const files = readdirSync(SYNTHEA).filter((f) => f.endsWith('.json')).sort();
    const limit = Number(process.env.BENCH_FILES ?? files.length);
    const chosen = files.slice(0, limit);
    return {
      bundles: chosen.map((f) => {
        const text = readFileSync(join(SYNTHEA, f), 'utf8');
        const bundle = JSON.parse(text) as Bundle;
        texts.set(bundle, text);
        return bundle;
      }),
      source: `Synthea (${SYNTHEA})`,
      bytes: chosen.reduce((a, f) => a + statSync(join(SYNTHEA, f)).size, 0),
    };
  }
  process.stdout.write(`${SYNTHEA} is absent: using the synthetic generator\n`);
  const gen = new SyntheticDataGenerator({ seed: 11, patients: Number(process.env.BENCH_PATIENTS ?? 500) });
  const bundles = [...gen.transactionBundles()];
  bundles[0].type = 'batch';
  return { bundles, source: 'synthetic generator', bytes: bundles.reduce((a, b) => a + JSON.stringify(b).length, 0) };
}

/** 1k vs 10k entries in one transaction: per-entry cost must not grow with the size (no quadratic work). */
async function transactionScaling(baseUrl: string, token: string): Promise<{ entries: number; seconds: number; perSecond: number; runs: number[] }[]> {
  const out = [];
  const repeats = Number(process.env.BENCH_SCALING_REPEATS ?? 3);
  if (!(repeats > 0)) return [];
  for (const entries of [1000, 10000]) {
    const runs: number[] = [];
    for (let r = 0; r < repeats; r++) runs.push(await timeTransaction(baseUrl, token, entries, r));
    const seconds = median(runs);
    out.push({ entries, seconds: round(seconds, 2), perSecond: round(entries / seconds), runs: runs.map((x) => round(x, 2)) });
  }
  return out;
}

function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted.length % 2 ? sorted[(sorted.length - 1) / 2] : (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]) / 2;
}

async function timeTransaction(baseUrl: string, token: string, entries: number, run: number): Promise<number> {
  {
    const patientUrn = `urn:uuid:00000000-0000-4000-8000-${String(entries).padStart(12, '0')}`;
    const bundle: Bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        {
          fullUrl: patientUrn,
          resource: { resourceType: 'Patient', identifier: [{ system: 'urn:bench', value: `${entries}-${run}` }], name: [{ family: 'Scale' }], gender: 'unknown' },
          request: { method: 'POST', url: 'Patient' },
        },
        ...Array.from({ length: entries - 1 }, (_, n) => ({
          resource: {
            resourceType: 'Observation',
            status: 'final',
            code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
            subject: { reference: patientUrn },
            effectiveDateTime: `2020-01-01T00:${String(n % 60).padStart(2, '0')}:00Z`,
            valueQuantity: { value: 60 + (n % 40), unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
          } as Resource,
          request: { method: 'POST' as const, url: 'Observation' },
        })),
      ],
    };
    const body = JSON.stringify(bundle);
    const started = performance.now();
    const res = await fetch(`${baseUrl}/fhir`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/fhir+json' },
      body,
    });
    await res.arrayBuffer();
    const seconds = (performance.now() - started) / 1000;
    if (res.status !== 200) throw new Error(`transaction of ${entries} failed with ${res.status}`);
    return seconds;
  }
}

/**
 * COPY of the same resource JSON into a bare, WAL-logged jsonb table (a temporary table would skip
 * the WAL our tables pay for), committed; median of three runs.
 */
async function rawCopyBaseline(bundles: Bundle[]): Promise<number> {
  const lines = bundles.flatMap((b) => (b.entry ?? []).map((e) => JSON.stringify(e.resource).replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/\t/g, '\\t')));
  // The app's role may not create tables (least privilege): the baseline runs as the schema owner.
  const client = new Client({ connectionString: ownerUrl() });
  await client.connect();
  const rates: number[] = [];
  try {
    for (let run = 0; run < 3; run++) {
      await client.query('DROP TABLE IF EXISTS raw_ingest');
      await client.query('CREATE TABLE raw_ingest (content jsonb)');
      const started = performance.now();
      await client.query('BEGIN');
      await new Promise<void>((resolve, reject) => {
        const stream = client.query(copyFrom('COPY raw_ingest (content) FROM STDIN'));
        stream.on('finish', () => resolve());
        stream.on('error', reject);
        const chunk = 5000;
        for (let i = 0; i < lines.length; i += chunk) stream.write(`${lines.slice(i, i + chunk).join('\n')}\n`);
        stream.end();
      });
      await client.query('COMMIT');
      rates.push(lines.length / ((performance.now() - started) / 1000));
    }
    return median(rates);
  } finally {
    await client.query('DROP TABLE IF EXISTS raw_ingest');
    await client.end();
  }
}

/** The schema owner's connection: the migration URL, else the embedded cluster's superuser. */
function ownerUrl(): string {
  if (process.env.DATABASE_URL) return process.env.DATABASE_MIGRATION_URL ?? process.env.DATABASE_URL;
  const credentials = JSON.parse(readFileSync(join(process.env.EMBEDDED_PG_DIR!, 'hie-credentials.json'), 'utf8'));
  return `postgres://${credentials.superuser.user}:${encodeURIComponent(credentials.superuser.password)}@127.0.0.1:${process.env.EMBEDDED_PG_PORT}/hie`;
}

/** In-process cost of validation, index extraction and JSON per resource on a sample. */
function profileStages(bundles: Bundle[]): Record<string, number> {
  const sample = bundles.flatMap((b) => (b.entry ?? []).map((e) => e.resource!)).slice(0, 5000);
  const validator = new ResourceValidator();
  const writer = new SearchIndexWriter(loadAppConfig());
  const time = (fn: (r: Resource) => unknown): number => {
    const started = performance.now();
    for (const r of sample) fn(r);
    return round((performance.now() - started) / sample.length, 3);
  };
  return {
    validation: time((r) => {
      try {
        validator.validate(r);
      } catch {
        /* counted above as errors when it matters */
      }
    }),
    searchIndexExtraction: time((r) => writer.extract(r)),
    patientCompartments: time((r) => patientCompartmentsOf(r)),
    jsonSerialize: time((r) => JSON.stringify(r)),
  };
}

/**
 * CPU seconds used so far by this process and by PostgreSQL: the postmaster, its live children and
 * the children it has reaped (`postgresCpuMs`). Summing only the backends listed in
 * pg_stat_activity lost every connection that closed during the load (the pool drops idle ones
 * after 10 s) and counted whole every one that opened (docs/performance.md, issue 21).
 */
function cpuSeconds(): { node: number; postgres: number } {
  const usage = process.cpuUsage();
  const pidFile = process.env.DATABASE_URL ? undefined : join(process.env.EMBEDDED_PG_DIR ?? '', 'postmaster.pid');
  // DATABASE_URL: PostgreSQL may be on another host, its CPU is not counted.
  const postmaster = pidFile && existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').split('\n')[0]) : undefined;
  return { node: (usage.user + usage.system) / 1e6, postgres: postmaster ? postgresCpuMs(postmaster) / 1000 : 0 };
}

function round(n: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:ingest failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
