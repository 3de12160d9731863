import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { Resource } from '@medplum/fhirtypes';
import { DataSource } from 'typeorm';
import type { AccessContext } from '../pipeline/access-context';
import { SearchIndexWriter } from './search-index.writer';
import { ReindexContributors, ReindexedResource } from './reindex-contributors';

/** Position in the (resource_type, id) order of current resources. */
export interface ReindexPosition {
  resourceType: string;
  id: string;
}

export interface ReindexRequest {
  /** Resource types to rebuild; all when empty. */
  types: string[];
  /** Continue after this resource (a previous run's `next`). */
  after?: ReindexPosition;
  /** Stop after this many resources; the result's `next` says where to continue. */
  limit?: number;
  batchSize: number;
  /** Called after each committed batch (progress output). */
  onBatch?: (progress: { processed: number; last: ReindexPosition }) => void;
}

export interface ReindexResult {
  processed: number;
  /** Set when resources remain after `limit`: pass it as `after` to continue. */
  next?: ReindexPosition;
}

const DEADLOCK = '40P01';
export const DEFAULT_REINDEX_BATCH = 500;

/**
 * Rebuilds the search index rows of current resources, keyset-paged in (resource_type, id) order,
 * one transaction per batch, and the modules' derived rows (ReindexContributors) in the same batch. Used by `npm run reindex` and the `$reindex` operation alike.
 *
 * A batch reads its resources `FOR SHARE` inside its transaction, so a concurrent write of one of
 * them waits (or is waited for) and an older version can never overwrite a newer one's rows.
 */
@Injectable()
export class SearchReindexer {
  constructor(
    @InjectDataSource() private readonly db: DataSource,
    /** The plain SearchIndexWriter: rebuilding rows must not re-judge stored SearchParameters. */
    private readonly indexer: SearchIndexWriter,
    /** Modules' own derived rows (identity's demographics), rebuilt in the same batch. */
    private readonly contributors: ReindexContributors,
  ) {}

  /** Reindexing reads every organization's resources: only under a named system context. */
  private static assertSystem(ctx: AccessContext): void {
    if (!ctx.system) throw new Error('Reindexing runs only under a system context (SystemAccess)');
  }

  async count(ctx: AccessContext, types: string[]): Promise<number> {
    SearchReindexer.assertSystem(ctx);
    const [{ n }] = (await this.db.query(
      `SELECT count(*)::int AS n FROM resource WHERE NOT deleted AND ($1::text[] IS NULL OR resource_type = ANY($1))`,
      [types.length ? types : null],
    )) as { n: number }[];
    return n;
  }

  async run(ctx: AccessContext, req: ReindexRequest): Promise<ReindexResult> {
    SearchReindexer.assertSystem(ctx);
    let processed = 0;
    let after = req.after ?? { resourceType: '', id: '' };
    const limit = req.limit ?? Number.POSITIVE_INFINITY;
    while (processed < limit) {
      const size = Math.min(req.batchSize, limit - processed);
      const last = await this.batch(req.types, after, size);
      if (!last) return { processed };
      processed += last.count;
      after = last.position;
      req.onBatch?.({ processed, last: after });
      if (last.count < size) return { processed };
    }
    return (await this.hasMore(req.types, after)) ? { processed, next: after } : { processed };
  }

  private async batch(types: string[], after: ReindexPosition, size: number): Promise<{ count: number; position: ReindexPosition } | undefined> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.db.transaction(async (tx) => {
          const rows = (await tx.query(
            `SELECT resource_type, id, content, custodian_org FROM resource
              WHERE NOT deleted AND (resource_type, id) > ($1, $2) AND ($3::text[] IS NULL OR resource_type = ANY($3))
              ORDER BY resource_type, id LIMIT $4 FOR SHARE`,
            [after.resourceType, after.id, types.length ? types : null, size],
          )) as { resource_type: string; id: string; content: Resource; custodian_org: string | null }[];
          const byType = new Map<string, ReindexedResource[]>();
          for (const row of rows) {
            await this.indexer.index(tx, row.resource_type, row.id, row.content, true);
            byType.set(row.resource_type, [...(byType.get(row.resource_type) ?? []), { id: row.id, content: row.content, custodianOrg: row.custodian_org }]);
          }
          for (const [type, resources] of byType) await this.contributors.reindex(tx, type, resources);
          const lastRow = rows[rows.length - 1];
          return lastRow ? { count: rows.length, position: { resourceType: lastRow.resource_type, id: lastRow.id } } : undefined;
        });
      } catch (err) {
        // A transaction Bundle locking the same rows in another order: the batch is simply retried.
        if ((err as { code?: string }).code === DEADLOCK && attempt < 3) continue;
        throw err;
      }
    }
  }

  private async hasMore(types: string[], after: ReindexPosition): Promise<boolean> {
    const rows = (await this.db.query(
      `SELECT 1 FROM resource
        WHERE NOT deleted AND (resource_type, id) > ($1, $2) AND ($3::text[] IS NULL OR resource_type = ANY($3)) LIMIT 1`,
      [after.resourceType, after.id, types.length ? types : null],
    )) as unknown[];
    return rows.length > 0;
  }
}
