import { loadavg } from 'node:os';
import { BenchServer, machineInfo, percentile, startBenchServer, writeResults } from './bench-support';

/**
 * npm run bench:audit — throughput of a CRUD mix with the stored audit trail on vs off
 * (AUDIT_STORE), alternating rounds on fresh servers, plus $verify-chain over what the rounds
 * recorded. A bounded load loop: BENCH_CLIENTS (16) concurrent HTTP clients for BENCH_SECONDS (10)
 * per round, BENCH_ROUNDS (2) rounds per setting. Mix: 70% read by id, 15% search, 15% create.
 */
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 16);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);

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

async function main(): Promise<void> {
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
