import { randomUUID } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import { Client } from 'pg';

/**
 * Load for bench:crud in its own thread: `concurrency` loops each send the next request when the
 * last answered, until `maxRequests` or `maxSeconds`. Latency is send to last byte, per kind.
 * - `mix`: 50% read by id, 30% Observation?subject=…&code=…, 20% create (a seeded choice per request);
 * - `get`: one URL (healthz, bare node:http, a read);
 * - `pk`: the raw primary-key SELECT of a read, one PostgreSQL connection per loop (the ceiling);
 * - `floor`: that SELECT, then an audit record appended and committed on a second connection: what a
 *   read waits for under the audit guarantee, without HTTP, auth or the framework (issue 23's bound);
 * - `read` / `search` / `create`: only that kind of the mix (single-client latency and counts per kind).
 */
export interface CrudJob {
  mode: 'mix' | 'get' | 'pk' | 'floor' | 'read' | 'search' | 'create';
  baseUrl: string;
  token?: string;
  concurrency: number;
  maxRequests: number;
  maxSeconds: number;
  /** get: the path. */
  path?: string;
  /** mix: paths of stored resources to read, searches, and the body of a create (POST to createPath, /fhir/Observation unless said). */
  reads?: string[];
  searches?: string[];
  createBody?: string;
  createPath?: string;
  /** pk and floor: connection URL and [type, id] pairs. */
  databaseUrl?: string;
  keys?: [string, string][];
  /** floor: a stored read's audit record as `audit_append`'s last nine arguments (id and time are made per call). */
  auditRecord?: unknown[];
}

export interface CrudResult {
  latencies: Record<string, number[]>;
  errors: string[];
  seconds: number;
}

async function run(job: CrudJob): Promise<CrudResult> {
  const latencies: Record<string, number[]> = {};
  const errors: string[] = [];
  let seed = 12345;
  const random = (): number => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  const pick = <T>(list: T[]): T => list[Math.floor(random() * list.length)];
  const started = performance.now();
  const deadline = started + job.maxSeconds * 1000;
  let issued = 0;
  // Node's fetch asks for gzip/deflate by itself; BENCH_ACCEPT_ENCODING=identity measures the server without compression (issue 24.4).
  const encoding = process.env.BENCH_ACCEPT_ENCODING;
  const headers: Record<string, string> = { Authorization: `Bearer ${job.token ?? ''}`, Accept: 'application/fhir+json', ...(encoding ? { 'Accept-Encoding': encoding } : {}) };

  const http = async (kind: string, path: string, init: RequestInit = {}, expect = 200): Promise<void> => {
    const t0 = performance.now();
    const res = await fetch(`${job.baseUrl}${path}`, { headers, ...init });
    const body = await res.arrayBuffer();
    (latencies[kind] ??= []).push(performance.now() - t0);
    if (res.status !== expect) errors.push(`${kind} ${res.status} ${Buffer.from(body).toString('utf8').slice(0, 200)}`);
  };

  const loop = async (): Promise<void> => {
    let pg: Client | undefined;
    /** floor: the audit writer's connection of its own, as the server has. */
    let writer: Client | undefined;
    if (job.mode === 'pk' || job.mode === 'floor') {
      pg = new Client({ connectionString: job.databaseUrl });
      await pg.connect();
    }
    if (job.mode === 'floor') {
      writer = new Client({ connectionString: job.databaseUrl });
      await writer.connect();
    }
    try {
      while (issued < job.maxRequests && performance.now() < deadline) {
        issued++;
        if (job.mode === 'get') {
          await http('get', job.path!);
        } else if (job.mode === 'pk') {
          const [type, id] = pick(job.keys!);
          const t0 = performance.now();
          await pg!.query({ name: 'pk', text: 'SELECT content FROM resource WHERE resource_type = $1 AND id = $2', values: [type, id] });
          (latencies.pk ??= []).push(performance.now() - t0);
        } else if (job.mode === 'floor') {
          // What a read by id must wait for under the audit guarantee, with no HTTP, auth or framework:
          // its key lookup, then its record appended, chained and committed (a WAL flush) on the writer's connection.
          const [type, id] = pick(job.keys!);
          const t0 = performance.now();
          await pg!.query({ name: 'pk', text: 'SELECT content FROM resource WHERE resource_type = $1 AND id = $2', values: [type, id] });
          await writer!.query({
            name: 'append',
            text: 'SELECT audit_append($1::uuid[], $2::timestamptz[], $3, $4, $5, $6, $7, $8, $9, $10, $11)',
            values: [[randomUUID()], [new Date().toISOString()], ...job.auditRecord!],
          });
          (latencies.floor ??= []).push(performance.now() - t0);
        } else {
          const r = job.mode === 'read' ? 0 : job.mode === 'search' ? 0.5 : job.mode === 'create' ? 0.9 : random();
          if (r < 0.5) await http('read', pick(job.reads!));
          else if (r < 0.8) await http('search', pick(job.searches!));
          else await http('create', job.createPath ?? '/fhir/Observation', { method: 'POST', headers: { ...headers, 'Content-Type': 'application/fhir+json' }, body: job.createBody }, 201);
        }
      }
    } finally {
      await pg?.end();
      await writer?.end();
    }
  };
  await Promise.all(Array.from({ length: job.concurrency }, loop));
  return { latencies, errors, seconds: (performance.now() - started) / 1000 };
}

run(workerData as CrudJob).then(
  (result) => parentPort!.postMessage(result),
  (err: unknown) => parentPort!.postMessage({ latencies: {}, errors: [String(err)], seconds: 0 }),
);
