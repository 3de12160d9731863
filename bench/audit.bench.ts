import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { BenchServer, machineInfo, percentile, startBenchServer, writeResults } from './bench-support';
import { loadAppConfig } from '../src/config/app.config';
import { resolveDatabaseUrls } from '../src/database/database.module';

/**
 * npm run bench:audit — throughput of a CRUD mix with the stored audit trail on vs off
 * (AUDIT_STORE), alternating rounds on fresh servers, plus $verify-chain over what the rounds
 * recorded. A bounded load loop: BENCH_CLIENTS (16) concurrent HTTP clients for BENCH_SECONDS (10)
 * per round, BENCH_ROUNDS (2) rounds per setting. Mix: 70% read by id, 15% search, 15% create.
 */
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 16);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
/**
 * `BENCH_VERIFY_RECORDS=1000000 npm run bench:audit`: instead of the mix, seeds that many records
 * straight into the trail (as the owner, through audit_append in batches of SEED_BATCH: chained
 * exactly as the writer chains them) into a persistent cluster (`BENCH_PG_DIR`, default
 * ./data/bench-audit-postgres; a rerun tops it up), then times `$verify-chain` over all of them
 * `BENCH_VERIFY_RUNS` (3) times.
 */
const VERIFY_RECORDS = Number(process.env.BENCH_VERIFY_RECORDS ?? 0);
const VERIFY_RUNS = Number(process.env.BENCH_VERIFY_RUNS ?? 3);
const SEED_BATCH = 5_000;

interface Round {
  audit: 'on' | 'off';
  requests: number;
  errors: number;
  perSecond: number;
  p50: number;
  p99: number;
  records: number;
  verifyMs?: number;
}

async function round(audit: 'on' | 'off'): Promise<{ round: Round; server: BenchServer }> {
  process.env.AUDIT_STORE = audit;
  const server = await startBenchServer();
  const headers = { Authorization: `Bearer ${server.token}`, 'Content-Type': 'application/fhir+json' };
  const patient = {
    resourceType: 'Patient',
    identifier: [{ system: 'urn:bench', value: 'p1' }],
    name: [{ family: 'Bench', given: ['Audit'] }],
    gender: 'female',
  };
  const created = (await (await fetch(`${server.baseUrl}/fhir/Patient`, { method: 'POST', headers, body: JSON.stringify(patient) })).json()) as { id: string };
  const latencies: number[] = [];
  let errors = 0;
  let n = 0;
  const until = performance.now() + SECONDS * 1000;
  const client = async (): Promise<void> => {
    while (performance.now() < until) {
      const k = n++ % 20;
      const started = performance.now();
      const res =
        k < 14
          ? await fetch(`${server.baseUrl}/fhir/Patient/${created.id}`, { headers })
          : k < 17
            ? await fetch(`${server.baseUrl}/fhir/Patient?family=Bench&_count=5`, { headers })
            : await fetch(`${server.baseUrl}/fhir/Observation`, {
                method: 'POST',
                headers,
                body: JSON.stringify({ resourceType: 'Observation', status: 'final', code: { text: 'pulse' }, subject: { reference: `Patient/${created.id}` } }),
              });
      await res.arrayBuffer();
      if (res.status >= 300) errors++;
      latencies.push(performance.now() - started);
    }
  };
  await Promise.all(Array.from({ length: CLIENTS }, client));
  latencies.sort((a, b) => a - b);
  const [{ records }] = await server.db.query(`SELECT count(*)::int AS records FROM audit_event`);
  const result: Round = {
    audit,
    requests: latencies.length,
    errors,
    perSecond: Math.round(latencies.length / SECONDS),
    p50: Math.round(percentile(latencies, 50) * 10) / 10,
    p99: Math.round(percentile(latencies, 99) * 10) / 10,
    records,
  };
  if (audit === 'on') {
    const started = performance.now();
    const verify = await fetch(`${server.baseUrl}/fhir/$verify-chain`, { headers: { Authorization: `Bearer ${await auditorToken(server)}` } });
    if (verify.status !== 200) throw new Error(`$verify-chain answered ${verify.status}`);
    result.verifyMs = Math.round(performance.now() - started);
  }
  return { round: result, server };
}

async function auditorToken(server: BenchServer): Promise<string> {
  const { ClientRegistrationRepository } = await import('../src/auth/client-registration.repository');
  const clientId = `bench-auditor-${Date.now()}`;
  const { secret } = await server.app.get(ClientRegistrationRepository).create({
    clientId, name: 'bench auditor', organization: 'org-bench', role: 'auditor', scopes: ['system/AuditEvent.rs'], purposes: ['HOPERAT'], withSecret: true,
  });
  const res = await fetch(`${server.baseUrl}/oauth2/token`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', client_id: clientId, client_secret: secret!, scope: 'system/AuditEvent.rs' }),
  });
  return ((await res.json()) as { access_token: string }).access_token;
}

/** An AuditEvent of ≈ 1.3 KB like a search's (BALP Query: client, organization, 3 patients, query). */
function seedTemplate(): string {
  return JSON.stringify({
    resourceType: 'AuditEvent',
    id: '__ID__',
    meta: { profile: ['https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientQuery'] },
    type: { system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest', display: 'Restful Operation' },
    subtype: [{ system: 'http://hl7.org/fhir/restful-interaction', code: 'search-type', display: 'search type' }],
    action: 'E',
    recorded: '__RECORDED__',
    outcome: '0',
    outcomeDesc: '200',
    purposeOfEvent: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActReason', code: 'TREAT' }] }],
    agent: [
      { type: { coding: [{ system: 'http://dicom.nema.org/resources/ontology/DCM', code: '110153', display: 'Source Role ID' }] },
        who: { identifier: { system: 'http://hie.example.org/fhir/client-id', value: 'bench-hospital-org-bench' } }, requestor: true,
        network: { address: '127.0.0.1', type: '2' } },
      { who: { reference: 'Organization/org-bench' }, requestor: false },
    ],
    source: { site: 'bench-node:1', observer: { display: 'fhir-hie-server' }, type: [{ system: 'http://terminology.hl7.org/CodeSystem/security-source-type', code: '4' }] },
    entity: [
      ...['a', 'b', 'c'].map((x) => ({ what: { reference: `Patient/__P${x}__` }, role: { system: 'http://terminology.hl7.org/CodeSystem/object-role', code: '1', display: 'Patient' } })),
      { type: { system: 'http://terminology.hl7.org/CodeSystem/audit-entity-type', code: '2' }, role: { system: 'http://terminology.hl7.org/CodeSystem/object-role', code: '24', display: 'Query' },
        query: Buffer.from('subject=Patient/123&code=http://loinc.org|8867-4&_count=20').toString('base64') },
      { what: { identifier: { system: 'http://hie.example.org/fhir/request-id', value: '__ID__' } }, detail: [{ type: 'route', valueString: '/fhir/Observation' }] },
    ],
  });
}

/** Tops the trail up to VERIFY_RECORDS records, as the owner, in batches through audit_append. */
async function seedTrail(owner: Client): Promise<number> {
  const template = seedTemplate();
  let [{ seq }] = (await owner.query('SELECT seq::int AS seq FROM audit_chain_head')).rows as { seq: number }[];
  const started = performance.now();
  while (seq < VERIFY_RECORDS) {
    const n = Math.min(SEED_BATCH, VERIFY_RECORDS - seq);
    await owner.query(
      `WITH r AS (
         SELECT gen_random_uuid() AS id, clock_timestamp() AS recorded, md5(g::text) AS p FROM generate_series(1, $1::int) g
       )
       SELECT audit_append(array_agg(id), array_agg(recorded), array_agg('rest'::text), array_agg('search-type'::text), array_agg('E'::text), array_agg('0'::text),
         array_agg('bench-hospital-org-bench' || E'\x1e' || 'Organization/org-bench'),
         array_agg(p || 'a' || E'\x1e' || p || 'b' || E'\x1e' || p || 'c'), array_agg(''::text), array_agg('TREAT'::text),
         array_agg(replace(replace(replace(replace(replace($2::text, '__ID__', id::text), '__RECORDED__', to_char(recorded AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')),
           '__Pa__', p || 'a'), '__Pb__', p || 'b'), '__Pc__', p || 'c')))
       FROM r`,
      [n, template],
    );
    seq += n;
    if (seq % 100_000 < SEED_BATCH) process.stdout.write(`seeded ${seq} records (${Math.round((performance.now() - started) / 1000)} s)\n`);
  }
  return Math.round(performance.now() - started);
}

/**
 * CPU seconds used so far by the embedded cluster's processes (the postmaster's children, from
 * /proc): on a loaded machine wall time says little, CPU time is what a quiet machine would spend.
 */
function clusterCpuSeconds(dataDir: string): number | undefined {
  const pidFile = join(dataDir, 'postmaster.pid');
  if (!existsSync(pidFile) || !existsSync('/proc/self/stat')) return undefined;
  const postmaster = readFileSync(pidFile, 'utf8').split('\n')[0].trim();
  let ticks = 0;
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // fields[1] = ppid, [11] = utime, [12] = stime (after pid and comm)
      if (fields[1] === postmaster || pid === postmaster) ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      /* the process ended */
    }
  }
  return ticks / 100; // USER_HZ
}

async function verifyBench(): Promise<void> {
  const pgDir = process.env.BENCH_PG_DIR ?? './data/bench-audit-postgres';
  const server = await startBenchServer({ persistentPgDir: pgDir });
  try {
    const owner = new Client({ connectionString: (await resolveDatabaseUrls(loadAppConfig())).migrationUrl });
    await owner.connect();
    let seedMs: number;
    let bytes: number;
    try {
      seedMs = await seedTrail(owner);
      await owner.query('VACUUM ANALYZE audit_event');
      [{ bytes }] = (await owner.query(`SELECT avg(octet_length(content::text))::int AS bytes FROM (SELECT content FROM audit_event LIMIT 1000) s`)).rows;
    } finally {
      await owner.end();
    }
    const token = await auditorToken(server);
    const runs: { ms: number; checked: number; verified: boolean; pgCpuS?: number; nodeCpuS: number }[] = [];
    for (let r = 0; r < VERIFY_RUNS; r++) {
      const cpuBefore = clusterCpuSeconds(pgDir);
      const nodeBefore = process.cpuUsage();
      const started = performance.now();
      const res = await fetch(`${server.baseUrl}/fhir/$verify-chain`, { headers: { Authorization: `Bearer ${token}` } });
      const body = (await res.json()) as { parameter: { name: string; valueBoolean?: boolean; valueInteger?: number }[] };
      const ms = Math.round(performance.now() - started);
      if (res.status !== 200) throw new Error(`$verify-chain answered ${res.status}`);
      const checked = body.parameter.find((p) => p.name === 'checked')!.valueInteger!;
      const verified = body.parameter.find((p) => p.name === 'verified')!.valueBoolean!;
      const cpuAfter = clusterCpuSeconds(pgDir);
      const node = process.cpuUsage(nodeBefore);
      runs.push({
        ms,
        checked,
        verified,
        pgCpuS: cpuBefore === undefined || cpuAfter === undefined ? undefined : Math.round((cpuAfter - cpuBefore) * 10) / 10,
        nodeCpuS: Math.round((node.user + node.system) / 1e5) / 10,
      });
      process.stdout.write(`${JSON.stringify(runs[runs.length - 1])}\n`);
    }
    const machine = await machineInfo(server.db);
    const median = [...runs].sort((a, b) => a.ms - b.ms)[Math.floor(runs.length / 2)];
    const perMillion = Math.round((median.ms / median.checked) * 1_000_000 / 100) / 10;
    const markdown = [
      `# $verify-chain over ${median.checked.toLocaleString('en')} records (${new Date().toISOString()})`,
      '',
      `Machine: ${JSON.stringify(machine)}; load average at the end ${loadavg().map((l) => l.toFixed(1)).join(' ')}`,
      `Records seeded through audit_append in batches of ${SEED_BATCH} (${seedMs} ms this run), ≈ ${bytes} bytes of AuditEvent JSON each.`,
      '',
      '| run | records | verified | wall ms | PostgreSQL CPU s | server CPU s |',
      '|---|---|---|---|---|---|',
      ...runs.map((r, i) => `| ${i + 1} | ${r.checked} | ${r.verified} | ${r.ms} | ${r.pgCpuS ?? ''} | ${r.nodeCpuS} |`),
      '',
      `**Median ${median.ms} ms wall, i.e. ${perMillion} s per 1M records at this rate and load.**`,
      median.pgCpuS === undefined
        ? ''
        : `CPU per 1M records: PostgreSQL ${Math.round((median.pgCpuS / median.checked) * 1e7) / 10} s, server ${Math.round((median.nodeCpuS / median.checked) * 1e7) / 10} s; ` +
          `with the two chunks in parallel on two otherwise idle cores, wall ≈ half the PostgreSQL CPU.`,
      '',
    ].join('\n');
    writeResults(process.env.BENCH_NAME ?? 'audit-verify', { machine, records: median.checked, seedMs, bytes, runs }, markdown);
  } finally {
    await server.close();
  }
}

async function main(): Promise<void> {
  if (VERIFY_RECORDS > 0) return verifyBench();
  const rounds: Round[] = [];
  let machine: Record<string, unknown> = {};
  for (let r = 0; r < ROUNDS; r++) {
    for (const audit of ['on', 'off'] as const) {
      const { round: result, server } = await round(audit);
      machine = await machineInfo(server.db);
      rounds.push(result);
      process.stdout.write(`${JSON.stringify(result)}\n`);
      await server.close();
    }
  }
  const mean = (audit: 'on' | 'off') => {
    const of = rounds.filter((r) => r.audit === audit);
    return of.reduce((s, r) => s + r.perSecond, 0) / of.length;
  };
  const ratio = Math.round((mean('on') / mean('off')) * 100) / 100;
  const markdown = [
    `# Audit on vs off (${new Date().toISOString()})`,
    '',
    `Machine: ${JSON.stringify(machine)}; load average at the end ${loadavg().map((l) => l.toFixed(1)).join(' ')}`,
    `Mix: 70% read, 15% search, 15% create; ${CLIENTS} clients, ${SECONDS} s per round, fresh server and database per round.`,
    '',
    '| Audit | req/s | p50 ms | p99 ms | errors | audit records | $verify-chain ms |',
    '|---|---|---|---|---|---|---|',
    ...rounds.map((r) => `| ${r.audit} | ${r.perSecond} | ${r.p50} | ${r.p99} | ${r.errors} | ${r.records} | ${r.verifyMs ?? ''} |`),
    '',
    `**Throughput ratio (on / off): ${ratio}**`,
    '',
  ].join('\n');
  writeResults('audit', { machine, rounds, ratio }, markdown);
}

void main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);
