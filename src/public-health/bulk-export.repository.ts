import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource, EntityManager } from 'typeorm';
import type { Principal } from '../fhir/pipeline/principal';

export type BulkExportStatus = 'accepted' | 'in-progress' | 'completed' | 'failed' | 'cancelled' | 'expired';

/** Which export was asked for: the level and its target, and the kick-off's parameters as checked. */
export interface BulkExportParams {
  level: 'system' | 'patient' | 'group';
  /** Group level: the Group's id, and its Patient members as of the kick-off. */
  groupId?: string;
  members?: string[];
  /** Types to export, in order (resolved at kick-off against what the client may search). */
  types: string[];
  since?: string;
  /** Per type, the `_typeFilter` queries (OR-ed), each as its query string. */
  typeFilters: Record<string, string[]>;
  /** HIPAA Safe Harbor de-identified output (docs/public-health.md). */
  deidentified?: boolean;
}

/** One NDJSON file of a running or finished export. */
export interface BulkExportFile {
  type: string;
  /** File name under the export's directory (`{Type}.ndjson`). */
  file: string;
  count: number;
  bytes: number;
}

export interface BulkExportRow {
  id: string;
  clientId: string;
  principal: Principal;
  request: string;
  params: BulkExportParams;
  status: BulkExportStatus;
  progress?: string;
  transactionTime: string;
  error?: string;
  output: BulkExportFile[];
  bytes: number;
  expiresAt?: string;
}

interface Stored {
  id: string;
  client_id: string;
  principal: Principal;
  request: string;
  params: BulkExportParams;
  status: BulkExportStatus;
  progress: string | null;
  transaction_time: Date;
  error: string | null;
  output: BulkExportFile[];
  bytes: string;
  expires_at: Date | null;
}

const COLUMNS = 'id, client_id, principal, request, params, status, progress, transaction_time, error, output, bytes, expires_at';

function rowOf(r: Stored): BulkExportRow {
  return {
    id: r.id,
    clientId: r.client_id,
    principal: r.principal,
    request: r.request,
    params: r.params,
    status: r.status,
    progress: r.progress ?? undefined,
    transactionTime: r.transaction_time.toISOString(),
    error: r.error ?? undefined,
    output: r.output,
    bytes: Number(r.bytes),
    expiresAt: r.expires_at?.toISOString(),
  };
}

/** The `bulk_export` table (migration 1732402400000): the export jobs' state. Ids and counts only in logs. */
@Injectable()
export class BulkExportRepository {
  constructor(@InjectDataSource() private readonly db: DataSource) {}

  /**
   * Exports of this client that are accepted or running, counted under a per-client transaction
   * lock so two concurrent kick-offs cannot both pass the limit.
   */
  async activeCount(tx: EntityManager, clientId: string): Promise<number> {
    await tx.query(`SELECT pg_advisory_xact_lock(hashtext('bulk-export:' || $1))`, [clientId]);
    const [row] = await tx.query(`SELECT count(*)::int AS n FROM bulk_export WHERE client_id = $1 AND status IN ('accepted', 'in-progress')`, [clientId]);
    return row.n as number;
  }

  async insert(tx: EntityManager, row: Pick<BulkExportRow, 'id' | 'clientId' | 'principal' | 'request' | 'params'>): Promise<BulkExportRow> {
    const [stored] = await tx.query(
      `INSERT INTO bulk_export (id, client_id, principal, request, params, status, transaction_time)
       VALUES ($1, $2, $3, $4, $5, 'accepted', now()) RETURNING ${COLUMNS}`,
      [row.id, row.clientId, JSON.stringify(row.principal), row.request, JSON.stringify(row.params)],
    );
    return rowOf(stored as Stored);
  }

  async find(id: string): Promise<BulkExportRow | undefined> {
    const [stored] = await this.db.query(`SELECT ${COLUMNS} FROM bulk_export WHERE id = $1`, [id]);
    return stored ? rowOf(stored as Stored) : undefined;
  }

  async status(id: string): Promise<BulkExportStatus | undefined> {
    const [row] = await this.db.query(`SELECT status FROM bulk_export WHERE id = $1`, [id]);
    return row?.status as BulkExportStatus | undefined;
  }

  /** Marks the export running (from accepted, or again after a restart); false when it is no longer to run. */
  async start(id: string): Promise<boolean> {
    return changed(this.db.manager, `UPDATE bulk_export SET status = 'in-progress' WHERE id = $1 AND status IN ('accepted', 'in-progress') RETURNING id`, [id]);
  }

  async setProgress(id: string, progress: string): Promise<void> {
    await this.db.query(`UPDATE bulk_export SET progress = $2 WHERE id = $1 AND status = 'in-progress'`, [id, progress]);
  }

  /** Records one finished type's file (replacing an earlier attempt's entry for that type). */
  async addFile(id: string, file: BulkExportFile): Promise<boolean> {
    return changed(
      this.db.manager,
      `UPDATE bulk_export SET
         output = (SELECT coalesce(jsonb_agg(f), '[]'::jsonb) FROM jsonb_array_elements(output) f WHERE f->>'type' <> $2) || jsonb_build_array($3::jsonb),
         bytes = (SELECT coalesce(sum((f->>'bytes')::bigint), 0) FROM jsonb_array_elements(output) f WHERE f->>'type' <> $2) + $4
       WHERE id = $1 AND status = 'in-progress' RETURNING id`,
      [id, file.type, JSON.stringify(file), file.bytes],
    );
  }

  /** Runs `work` in one transaction (completing an export and enqueuing its expiry together). */
  transaction<T>(work: (tx: EntityManager) => Promise<T>): Promise<T> {
    return this.db.transaction(work);
  }

  async complete(id: string, expireHours: number, tx: EntityManager = this.db.manager): Promise<boolean> {
    return changed(
      tx,
      `UPDATE bulk_export SET status = 'completed', progress = NULL, completed_at = now(), expires_at = now() + make_interval(hours => $2)
       WHERE id = $1 AND status = 'in-progress' RETURNING id`,
      [id, expireHours],
    );
  }

  async fail(id: string, error: string): Promise<void> {
    await this.db.query(
      `UPDATE bulk_export SET status = 'failed', error = $2, progress = NULL, completed_at = now() WHERE id = $1 AND status IN ('accepted', 'in-progress')`,
      [id, error],
    );
    await this.forgetPseudonyms(id);
  }

  /** Cancels an export of this client (any state but expired); false when there is none. */
  async cancel(id: string, clientId: string): Promise<boolean> {
    const cancelled = await changed(
      this.db.manager,
      `UPDATE bulk_export SET status = 'cancelled', progress = NULL, output = '[]', bytes = 0, completed_at = coalesce(completed_at, now())
       WHERE id = $1 AND client_id = $2 AND status NOT IN ('cancelled', 'expired') RETURNING id`,
      [id, clientId],
    );
    if (cancelled) await this.forgetPseudonyms(id);
    return cancelled;
  }

  async expire(id: string): Promise<void> {
    await this.db.query(`UPDATE bulk_export SET status = 'expired', output = '[]', bytes = 0 WHERE id = $1 AND status = 'completed'`, [id]);
  }

  /** The pseudonym of each `Type/id` of a de-identified export, made (random) on first use. */
  async pseudonyms(exportId: string, references: string[]): Promise<Map<string, string>> {
    const rows: { reference: string; pseudonym: string }[] = await this.db.query(
      `WITH wanted AS (SELECT DISTINCT unnest($2::text[]) AS reference),
       made AS (
         INSERT INTO bulk_export_pseudonym (export_id, reference, pseudonym)
         SELECT $1, reference, gen_random_uuid() FROM wanted ON CONFLICT DO NOTHING RETURNING reference, pseudonym
       )
       SELECT reference, pseudonym FROM made
       UNION ALL
       SELECT p.reference, p.pseudonym FROM bulk_export_pseudonym p JOIN wanted w USING (reference) WHERE p.export_id = $1`,
      [exportId, references],
    );
    return new Map(rows.map((r) => [r.reference, r.pseudonym]));
  }

  /** The re-identification key goes when the export ends, whatever the end. */
  async forgetPseudonyms(exportId: string, tx: EntityManager = this.db.manager): Promise<void> {
    await tx.query(`DELETE FROM bulk_export_pseudonym WHERE export_id = $1`, [exportId]);
  }

  /** Bytes on disk of every other export's files (completed, running or failed part-way): the quota's base. */
  async bytesInUse(exceptId: string): Promise<number> {
    const [row] = await this.db.query(`SELECT coalesce(sum(bytes), 0)::bigint AS n FROM bulk_export WHERE id <> $1 AND status IN ('in-progress', 'completed')`, [exceptId]);
    return Number(row.n);
  }
}

/** Whether an `UPDATE … RETURNING` changed a row (run as a SELECT: TypeORM answers UPDATE with [rows, count]). */
async function changed(tx: EntityManager, update: string, params: unknown[]): Promise<boolean> {
  const [row] = await tx.query(`WITH changed AS (${update}) SELECT count(*)::int AS n FROM changed`, params);
  return row.n > 0;
}
