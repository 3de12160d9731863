import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { AuditEvent } from '@medplum/fhirtypes';
import type { DataSource, EntityManager, QueryRunner } from 'typeorm';
import type { AuditEventRow } from './audit-event.builder';

/** Filters of an AuditEvent search, compiled by AuditEventSearch; every value is bound. */
export interface AuditFilter {
  patients?: string[][];
  agents?: string[][];
  entities?: string[][];
  actions?: string[][];
  outcomes?: string[][];
  purposes?: string[][];
  types?: string[][];
  subtypes?: string[][];
  /** Half-open instant ranges [min, max) the `recorded` time must fall in (each an AND). */
  recorded?: { min?: string; max?: string }[];
  /** The client's SMART scope queries on AuditEvent: a record must match at least one (each an AND of its parameters). */
  scopeAlternatives?: AuditFilter[];
}

export interface AuditPage {
  filter: AuditFilter;
  count: number;
  ascending: boolean;
  /** Keyset: only records past this sequence number in the page order. */
  afterSeq?: string;
}

export interface StoredAuditEvent {
  seq: string;
  resource: AuditEvent;
}

/**
 * What an export of [since, until) holds, fixed by one snapshot: the records recorded in the range
 * whose sequence number is at most `lastSeq` (later appends are left out, so the count stays true).
 */
export interface AuditExportRange {
  since: string;
  until: string;
  count: number;
  /** Lowest and highest sequence number exported, and the stored hash of the highest (an anchor for `$verify-chain`). */
  firstSeq?: string;
  lastSeq?: string;
  lastHash?: string;
}

/** The first link of the chain that does not hold, with the record it names. */
export interface ChainBreak {
  seq: string;
  id?: string;
  problem: 'modified' | 'missing' | 'inserted' | 'relinked' | 'head-mismatch';
}

export interface ChainVerification {
  from: string;
  to: string;
  checked: number;
  broken?: ChainBreak;
}

/**
 * The audit trail's own tables (`audit_event`, `audit_chain_head`; migration 1732401200000). All
 * SQL on them lives here. Appends go through `audit_append`, the chain's single sequencer.
 */
/** Joins array columns for audit_append and the digest (ids and codes never contain it). */
const ARRAY_SEPARATOR = '\x1e';
/** $verify-chain: records per scan, and scans at a time (each uses one pooled connection). */
const VERIFY_CHUNK = 50_000n;
const VERIFY_PARALLEL = 2;

interface ChunkResult {
  checked: number;
  broken?: ChainBreak;
}

@Injectable()
export class AuditTrailRepository {
  /** The group-commit writer's own connection (see appendAlone). */
  private writerConnection?: QueryRunner;

  constructor(@InjectDataSource() private readonly db: DataSource) {}

  /**
   * Appends on a connection of its own, outside the pool's turn-taking: the requests whose records
   * these are hold pooled connections while they wait, so a full pool must not starve their audit.
   */
  async appendAlone(rows: readonly AuditEventRow[], relaxed = false): Promise<void> {
    if (!this.writerConnection || this.writerConnection.isReleased) {
      const runner = this.db.createQueryRunner();
      await runner.connect();
      this.writerConnection = runner;
    }
    const runner = this.writerConnection;
    try {
      await this.append(rows, runner.manager, relaxed);
    } catch (err) {
      // A broken connection is replaced on the next batch.
      this.writerConnection = undefined;
      await runner.release().catch(() => undefined);
      throw err;
    }
  }

  async releaseWriterConnection(): Promise<void> {
    const runner = this.writerConnection;
    this.writerConnection = undefined;
    await runner?.release().catch(() => undefined);
  }

  /**
   * Chains rows in one statement (after the write records pending since the last batch); with
   * `tx` inside that transaction, else its own commit. With no rows it chains what is pending.
   * `relaxed` (outside a transaction only): that statement's own commit does not wait for its WAL
   * flush (`synchronous_commit` off for this transaction alone, set in the same round trip).
   */
  async append(rows: readonly AuditEventRow[], tx?: EntityManager, relaxed = false): Promise<void> {
    const sql = relaxed
      ? "SELECT audit_append($1::uuid[], $2::timestamptz[], $3, $4, $5, $6, $7, $8, $9, $10, $11), set_config('synchronous_commit', 'off', true)"
      : 'SELECT audit_append($1::uuid[], $2::timestamptz[], $3, $4, $5, $6, $7, $8, $9, $10, $11)';
    await (tx ?? this.db).query(sql, columnsOf(rows));
  }

  /**
   * The insert of a write's records, for the write's transaction (its session writes it with the
   * other deferred inserts right before COMMIT), without the chain head's lock: the group-commit
   * writer chains them after the commit (`audit_append` moves pending rows first).
   */
  pendingInsert(rows: readonly AuditEventRow[]): { text: string; values: unknown[] } {
    return {
      text: `INSERT INTO audit_pending (id, recorded, type, subtype, action, outcome, agent, patients, entities, purpose, content)
       SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[])`,
      values: columnsOf(rows),
    };
  }

  async ensurePartitions(monthsAhead: number): Promise<void> {
    await this.db.query('SELECT audit_ensure_partitions($1)', [monthsAhead]);
  }

  /**
   * What guards the log against this connection's role: privileges (it cannot change rows) or only
   * the append-only trigger (it owns the table, is a superuser, or holds UPDATE/DELETE/TRUNCATE).
   */
  async appendOnlyGuard(): Promise<{ role: string; privileges: boolean }> {
    const [row] = (await this.db.query(
      `SELECT current_user AS role, NOT (r.rolsuper OR pg_has_role(current_user, c.relowner, 'USAGE')
              OR has_table_privilege(c.oid, 'UPDATE') OR has_table_privilege(c.oid, 'DELETE') OR has_table_privilege(c.oid, 'TRUNCATE')) AS privileges
       FROM pg_class c, pg_roles r WHERE c.oid = 'audit_event'::regclass AND r.rolname = current_user`,
    )) as { role: string; privileges: boolean }[];
    return row;
  }

  async read(id: string, filter: AuditFilter = {}): Promise<AuditEvent | undefined> {
    if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id)) return undefined;
    const params: unknown[] = [id];
    const where = whereOf(filter, (v) => `$${params.push(v)}`);
    const rows: { content: AuditEvent }[] = await this.db.query(`SELECT content FROM audit_event WHERE id = $1 ${where.map((w) => `AND ${w}`).join(' ')} LIMIT 1`, params);
    return rows[0]?.content;
  }

  /** One page of matching records, newest first unless ascending; one row more than asked tells whether more follow. */
  async search(page: AuditPage): Promise<StoredAuditEvent[]> {
    const params: unknown[] = [];
    const bind = (v: unknown): string => `$${params.push(v)}`;
    const where = whereOf(page.filter, bind);
    if (page.afterSeq !== undefined) where.push(`seq ${page.ascending ? '>' : '<'} ${bind(page.afterSeq)}::bigint`);
    // The text of seq is selected under another name: ORDER BY a bare `seq` would otherwise take the
    // output column and sort as text (`99` after `439`), and the keyset cursor would skip records.
    const sql = `SELECT seq::text AS position, content FROM audit_event ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY seq ${page.ascending ? 'ASC' : 'DESC'} LIMIT ${bind(page.count + 1)}`;
    const rows: { position: string; content: AuditEvent }[] = await this.db.query(sql, params);
    return rows.map((r) => ({ seq: r.position, resource: r.content }));
  }

  /** How many records match (`_total=accurate`, `_summary=count`): the same bound WHERE as a page. */
  async count(filter: AuditFilter): Promise<number> {
    const params: unknown[] = [];
    const where = whereOf(filter, (v) => `$${params.push(v)}`);
    const [r] = (await this.db.query(`SELECT count(*)::bigint::text AS n FROM audit_event ${where.length ? `WHERE ${where.join(' AND ')}` : ''}`, params)) as { n: string }[];
    return Number(r.n);
  }

  /** The planner's row estimate for the same WHERE (`_total=estimate`): no scan of the log. */
  async estimate(filter: AuditFilter): Promise<number> {
    const params: unknown[] = [];
    const where = whereOf(filter, (v) => `$${params.push(v)}`);
    const [plan] = (await this.db.query(`EXPLAIN (FORMAT JSON) SELECT 1 FROM audit_event ${where.length ? `WHERE ${where.join(' AND ')}` : ''}`, params)) as {
      'QUERY PLAN': { Plan: { 'Plan Rows': number } }[];
    }[];
    return Math.round(Number(plan['QUERY PLAN'][0].Plan['Plan Rows']));
  }

  /**
   * The records an export of [since, until) will hold (see AuditExportRange). Sequence numbers
   * become visible in order (audit_append holds the chain head's row lock to its commit), so every
   * record up to the highest one seen here is already committed and the stream below finds them all.
   */
  async exportRange(since: string, until: string): Promise<AuditExportRange> {
    const [r] = (await this.db.query(
      `WITH r AS (SELECT count(*)::int AS n, min(seq) AS first, max(seq) AS last FROM audit_event WHERE recorded >= $1 AND recorded < $2)
       SELECT r.n, r.first::text AS first, r.last::text AS last, encode(e.hash, 'hex') AS last_hash
       FROM r LEFT JOIN audit_event e ON e.seq = r.last`,
      [since, until],
    )) as { n: number; first: string | null; last: string | null; last_hash: string | null }[];
    if (!r.n || r.first === null || r.last === null) return { since, until, count: 0 };
    return { since, until, count: r.n, firstSeq: r.first, lastSeq: r.last, lastHash: r.last_hash ?? undefined };
  }

  /** The records of an export range, oldest first, in pages (for a streamed export). */
  async *stream(range: AuditExportRange, pageSize = 1000): AsyncGenerator<AuditEvent[]> {
    if (!range.count || range.firstSeq === undefined || range.lastSeq === undefined) return;
    let after = String(BigInt(range.firstSeq) - 1n);
    for (;;) {
      const rows: { position: string; content: AuditEvent }[] = await this.db.query(
        `SELECT seq::text AS position, content FROM audit_event
         WHERE recorded >= $1 AND recorded < $2 AND seq > $3::bigint AND seq <= $4::bigint ORDER BY seq LIMIT $5`,
        [range.since, range.until, after, range.lastSeq, pageSize],
      );
      if (!rows.length) return;
      yield rows.map((r) => r.content);
      after = rows[rows.length - 1].position;
      if (rows.length < pageSize) return;
    }
  }

  /**
   * Checks every link in [from, to]: each row's hash recomputed from its columns and its stored
   * predecessor hash, each predecessor hash compared with the previous row's stored hash, sequence
   * numbers contiguous; the first record against the genesis hash or the record before the range,
   * the last against the chain head. Chunks of VERIFY_CHUNK records run VERIFY_PARALLEL at a time
   * (each is one scan; their boundaries link through the stored hash of the record before).
   */
  async verify(from?: string, to?: string): Promise<ChainVerification> {
    const [head] = (await this.db.query(`SELECT seq::text AS seq, hash FROM audit_chain_head WHERE id = 1`)) as { seq: string; hash: Buffer }[];
    const start = BigInt(from ?? '1');
    const end = BigInt(to ?? head.seq);
    const chunks: [bigint, bigint][] = [];
    for (let a = start; a <= end; a += VERIFY_CHUNK) chunks.push([a, a + VERIFY_CHUNK - 1n < end ? a + VERIFY_CHUNK - 1n : end]);
    const results: ChunkResult[] = new Array(chunks.length);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < chunks.length) {
        const i = next++;
        results[i] = await this.verifyChunk(chunks[i][0], chunks[i][1]);
      }
    };
    await Promise.all(Array.from({ length: Math.min(VERIFY_PARALLEL, chunks.length) }, worker));
    const result: ChainVerification = { from: String(start), to: String(end), checked: results.reduce((n, r) => n + r.checked, 0) };
    const broken = results.find((r) => r.broken)?.broken;
    if (broken) return { ...result, broken };
    if (!to) {
      // One statement, one snapshot: rows and the head move together, so records appended while
      // this ran are never mistaken for rows beyond the head.
      const beyond: { position: string; id: string }[] = await this.db.query(
        `SELECT seq::text AS position, id::text AS id FROM audit_event WHERE seq > (SELECT seq FROM audit_chain_head WHERE id = 1) ORDER BY seq LIMIT 1`,
      );
      if (beyond.length) return { ...result, broken: { seq: beyond[0].position, id: beyond[0].id, problem: 'inserted' } };
      const [last] = (await this.db.query(`SELECT hash FROM audit_event WHERE seq = $1::bigint`, [head.seq])) as { hash: Buffer }[];
      if (head.seq !== '0' && (!last || !last.hash.equals(head.hash))) return { ...result, broken: { seq: head.seq, problem: 'head-mismatch' } };
    }
    return result;
  }

  private async verifyChunk(a: bigint, b: bigint): Promise<ChunkResult> {
    // The link into the chunk: the genesis hash, or the stored hash of the record before it.
    const [before] = (await this.db.query(
      a === 1n ? `SELECT sha256(convert_to('hie-audit-chain-genesis', 'UTF8')) AS hash` : `SELECT hash FROM audit_event WHERE seq = $1::bigint - 1`,
      a === 1n ? [] : [String(a)],
    )) as { hash: Buffer }[];
    // The chunk is a range of the primary key and the heap is in append (= seq) order, so index
    // scans read it sequentially and already sorted for the window. Left to itself the planner
    // picks a sequential scan of the whole partition plus a sort for each chunk once a chunk is a
    // large share of the partition: a month of 1M records was then scanned once per chunk.
    const row = await this.db.transaction(async (m) => {
      await m.query(`SET LOCAL enable_seqscan = off`);
      await m.query(`SET LOCAL enable_bitmapscan = off`);
      await m.query(`SET LOCAL enable_sort = off`);
      const [r] = (await m.query(
        `WITH chain AS (
           SELECT seq, id, prev_hash, hash,
                  audit_link(prev_hash, seq, audit_event_digest(id, recorded, type, array_to_string(subtype, E'\\x1e'), action, outcome,
                    array_to_string(agent, E'\\x1e'), array_to_string(patients, E'\\x1e'), array_to_string(entities, E'\\x1e'), purpose, content::text)) AS computed,
                  lag(seq) OVER w AS prev_seq, lag(hash) OVER w AS prev_stored
           FROM audit_event WHERE seq BETWEEN $1::bigint AND $2::bigint
           WINDOW w AS (ORDER BY seq)
         ), problems AS (
           SELECT seq, id, CASE
               WHEN prev_seq = seq THEN 'inserted'
               WHEN (prev_seq IS NULL AND seq <> $1::bigint) OR seq <> prev_seq + 1 THEN 'missing'
               WHEN computed <> hash THEN 'modified'
               WHEN prev_hash <> COALESCE(prev_stored, $3::bytea, prev_hash) THEN 'relinked'
             END AS problem
           FROM chain
         )
         -- One pass: the count, the last number and the first problem (few rows reach the ORDER BY).
         SELECT count(*)::int AS checked, max(seq)::text AS last,
                (array_agg(ARRAY[seq::text, id::text, problem] ORDER BY seq) FILTER (WHERE problem IS NOT NULL))[1:1] AS first
         FROM problems`,
        [String(a), String(b), before?.hash ?? null],
      )) as { checked: number; last: string | null; first: string[][] | null }[];
      const [seq, id, problem] = r.first?.[0] ?? [null, null, null];
      return { checked: r.checked, last: r.last, seq, id, problem: problem as ChainBreak['problem'] | null };
    });
    if (row.seq !== null) {
      // A missing record is named by the sequence number that should be there.
      const seq = row.problem === 'missing' ? await this.firstMissing(String(a), row.seq) : row.seq;
      return { checked: row.checked, broken: { seq, ...(row.problem === 'missing' ? {} : { id: row.id! }), problem: row.problem! } };
    }
    if (b >= a && (row.last === null || BigInt(row.last) !== b)) {
      // Records at the end of the range are gone (a cut tail).
      return { checked: row.checked, broken: { seq: String(row.last === null ? a : BigInt(row.last) + 1n), problem: 'missing' } };
    }
    return { checked: row.checked };
  }

  private async firstMissing(start: string, at: string): Promise<string> {
    const [prev] = (await this.db.query(`SELECT max(seq)::text AS seq FROM audit_event WHERE seq >= $1::bigint AND seq < $2::bigint`, [start, at])) as { seq: string | null }[];
    return prev.seq === null ? start : String(BigInt(prev.seq) + 1n);
  }

  /** Records that name a patient, since an instant, oldest first (the accounting of disclosures). */
  async forPatient(patientId: string, since: string | undefined, limit: number): Promise<AuditEvent[]> {
    const rows: { content: AuditEvent }[] = await this.db.query(
      `SELECT content FROM audit_event WHERE patients @> ARRAY[$1::text] ${since ? 'AND recorded >= $3' : ''} ORDER BY seq LIMIT $2`,
      since ? [patientId, limit, since] : [patientId, limit],
    );
    return rows.map((r) => r.content);
  }

  /** Count of stored records (tests, operations). */
  async headSeq(): Promise<string> {
    const [head] = (await this.db.query(`SELECT seq::text AS seq FROM audit_chain_head WHERE id = 1`)) as { seq: string }[];
    return head.seq;
  }
}

function whereOf(f: AuditFilter, bind: (v: unknown) => string): string[] {
  const where: string[] = [];
  const anyOf = (column: string, groups: string[][] | undefined, array: boolean): void => {
    for (const values of groups ?? []) where.push(array ? `${column} && ${bind(values)}::text[]` : `${column} = ANY(${bind(values)}::text[])`);
  };
  anyOf('patients', f.patients, true);
  anyOf('agent', f.agents, true);
  anyOf('entities', f.entities, true);
  anyOf('subtype', f.subtypes, true);
  anyOf('action', f.actions, false);
  anyOf('outcome', f.outcomes, false);
  anyOf('purpose', f.purposes, false);
  anyOf('type', f.types, false);
  for (const r of f.recorded ?? []) {
    if (r.min !== undefined) where.push(`recorded >= ${bind(r.min)}::timestamptz`);
    if (r.max !== undefined) where.push(`recorded < ${bind(r.max)}::timestamptz`);
  }
  if (f.scopeAlternatives) {
    const any = f.scopeAlternatives.map((alt) => whereOf(alt, bind)).map((w) => (w.length ? `(${w.join(' AND ')})` : 'true'));
    where.push(any.length ? `(${any.join(' OR ')})` : 'false');
  }
  return where;
}

/** The parallel arrays `audit_append` and `audit_pending` take (array columns joined with U+001E). */
function columnsOf(rows: readonly AuditEventRow[]): unknown[] {
  const list = (values: readonly string[]): string => values.join(ARRAY_SEPARATOR);
  return [
    rows.map((r) => r.id),
    rows.map((r) => r.recorded),
    rows.map((r) => r.type),
    rows.map((r) => list(r.subtype)),
    rows.map((r) => r.action),
    rows.map((r) => r.outcome),
    rows.map((r) => list(r.agent)),
    rows.map((r) => list(r.patients)),
    rows.map((r) => list(r.entities)),
    rows.map((r) => r.purpose ?? null),
    // The exact text stored (json column) and hashed.
    rows.map((r) => JSON.stringify(r.content)),
  ];
}
