import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { AuditEvent } from '@medplum/fhirtypes';
import type { DataSource, EntityManager } from 'typeorm';
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
@Injectable()
export class AuditTrailRepository {
  constructor(@InjectDataSource() private readonly db: DataSource) {}

  /** Appends rows in one statement: with `tx`, inside the write's transaction; else its own commit. */
  async append(rows: readonly AuditEventRow[], tx?: EntityManager): Promise<void> {
    if (!rows.length) return;
    await (tx ?? this.db).query('SELECT audit_append($1::jsonb)', [JSON.stringify(rows)]);
  }

  async ensurePartitions(monthsAhead: number): Promise<void> {
    await this.db.query('SELECT audit_ensure_partitions($1)', [monthsAhead]);
  }

  async read(id: string): Promise<AuditEvent | undefined> {
    if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id)) return undefined;
    const rows: { content: AuditEvent }[] = await this.db.query('SELECT content FROM audit_event WHERE id = $1 LIMIT 1', [id]);
    return rows[0]?.content;
  }

  /** One page of matching records, newest first unless ascending; one row more than asked tells whether more follow. */
  async search(page: AuditPage): Promise<StoredAuditEvent[]> {
    const params: unknown[] = [];
    const bind = (v: unknown): string => `$${params.push(v)}`;
    const where = whereOf(page.filter, bind);
    if (page.afterSeq !== undefined) where.push(`seq ${page.ascending ? '>' : '<'} ${bind(page.afterSeq)}::bigint`);
    const sql = `SELECT seq::text AS seq, content FROM audit_event ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY seq ${page.ascending ? 'ASC' : 'DESC'} LIMIT ${bind(page.count + 1)}`;
    const rows: { seq: string; content: AuditEvent }[] = await this.db.query(sql, params);
    return rows.map((r) => ({ seq: r.seq, resource: r.content }));
  }

  /** Records recorded in [since, until), oldest first, in pages (for a streamed export). */
  async *stream(since: string, until: string, pageSize = 1000): AsyncGenerator<AuditEvent[]> {
    let after = '0';
    for (;;) {
      const rows: { seq: string; content: AuditEvent }[] = await this.db.query(
        `SELECT seq::text AS seq, content FROM audit_event WHERE recorded >= $1 AND recorded < $2 AND seq > $3::bigint ORDER BY seq LIMIT $4`,
        [since, until, after, pageSize],
      );
      if (!rows.length) return;
      yield rows.map((r) => r.content);
      after = rows[rows.length - 1].seq;
      if (rows.length < pageSize) return;
    }
  }

  /**
   * Checks every link in [from, to] in one scan (each row's hash recomputed from its columns and
   * its stored predecessor hash, each predecessor hash compared with the previous row's, sequence
   * numbers contiguous), plus the ends: the first record against the genesis hash or the record
   * before the range, the last against the chain head.
   */
  async verify(from?: string, to?: string): Promise<ChainVerification> {
    const [head] = (await this.db.query(`SELECT seq::text AS seq, hash FROM audit_chain_head WHERE id = 1`)) as { seq: string; hash: Buffer }[];
    const start = from ?? '1';
    const end = to ?? head.seq;
    const [genesis] = (await this.db.query(`SELECT sha256(convert_to('hie-audit-chain-genesis', 'UTF8')) AS hash`)) as { hash: Buffer }[];
    // The link into the range: the genesis hash, or the stored hash of the record before it.
    const before: { hash: Buffer }[] =
      start === '1' ? [genesis] : await this.db.query(`SELECT hash FROM audit_event WHERE seq = $1::bigint - 1`, [start]);
    const rows: { seq: string; id: string; problem: ChainBreak['problem']; checked: string }[] = await this.db.query(
      `WITH chain AS (
         SELECT seq, id, prev_hash, hash,
                audit_link(prev_hash, seq, audit_event_digest(id, recorded, type, subtype, action, outcome, agent, patients, entities, purpose, content)) AS computed,
                lag(seq) OVER w AS prev_seq, lag(hash) OVER w AS prev_stored
         FROM audit_event WHERE seq BETWEEN $1::bigint AND $2::bigint
         WINDOW w AS (ORDER BY seq, hash)
       ), problems AS (
         SELECT seq, id::text AS id, CASE
             WHEN prev_seq = seq THEN 'inserted'
             WHEN (prev_seq IS NULL AND seq <> $1::bigint) OR seq <> prev_seq + 1 THEN 'missing'
             WHEN computed <> hash THEN 'modified'
             WHEN prev_hash <> COALESCE(prev_stored, $3::bytea, prev_hash) THEN 'relinked'
           END AS problem
         FROM chain
       )
       SELECT seq::text AS seq, id, problem, (SELECT count(*) FROM chain)::text AS checked
       FROM problems WHERE problem IS NOT NULL ORDER BY seq LIMIT 1`,
      [start, end, before[0]?.hash ?? null],
    );
    const result: ChainVerification = { from: start, to: end, checked: 0 };
    if (rows.length) {
      const r = rows[0];
      // A missing record is named by the sequence number that should be there.
      const seq = r.problem === 'missing' ? await this.firstMissing(start, r.seq) : r.seq;
      return { ...result, checked: Number(r.checked), broken: { seq, ...(r.problem === 'missing' ? {} : { id: r.id }), problem: r.problem } };
    }
    const [count] = (await this.db.query(`SELECT count(*)::text AS n, max(seq)::text AS last FROM audit_event WHERE seq BETWEEN $1::bigint AND $2::bigint`, [start, end])) as { n: string; last: string | null }[];
    result.checked = Number(count.n);
    if (BigInt(end) >= BigInt(start) && (count.last ?? String(BigInt(start) - 1n)) !== end) {
      // Records at the end of the range are gone (a cut tail), or sit beyond the head (inserted).
      return { ...result, broken: { seq: String(BigInt(count.last ?? String(BigInt(start) - 1n)) + 1n), problem: 'missing' } };
    }
    if (!to) {
      const beyond: { seq: string; id: string }[] = await this.db.query(`SELECT seq::text AS seq, id::text AS id FROM audit_event WHERE seq > $1::bigint ORDER BY seq LIMIT 1`, [head.seq]);
      if (beyond.length) return { ...result, broken: { seq: beyond[0].seq, id: beyond[0].id, problem: 'inserted' } };
      const [last] = (await this.db.query(`SELECT hash FROM audit_event WHERE seq = $1::bigint`, [head.seq])) as { hash: Buffer }[];
      if (head.seq !== '0' && (!last || !last.hash.equals(head.hash))) return { ...result, broken: { seq: head.seq, problem: 'head-mismatch' } };
    }
    return result;
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
  return where;
}
