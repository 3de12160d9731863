import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource, EntityManager } from 'typeorm';
import { StorageSession } from '../../fhir/storage/storage-session';
import type { RetryPolicy } from './subscription-config';

/** One write's pending match (a row of `subscription_match_pending`, judged by `SubscriptionMatchJob`): the version and the Subscriptions it may notify. */
export interface MatchJobData {
  resourceType: string;
  id: string;
  versionId: string;
  /** Criteria decided in memory on the written version; the subscriber's access is left to the job. */
  candidates: string[];
  /** Criteria and access already tested in the write's transaction (the matching statement). */
  matched: string[];
}

/** A pending match a worker claimed (migration 1732402400500): ids only. */
export interface PendingMatch extends MatchJobData {
  /** The row's key. */
  key: string;
  /** Failed attempts before this one (0 on the first). */
  attempts: number;
}

/** A claimed batch: its rows and the lease that fences what this worker may settle. */
export interface ClaimedMatches {
  matches: PendingMatch[];
  /** `claimed_until` as PostgreSQL wrote it (full precision): a row reclaimed after its lease lapsed no longer carries it. */
  lease: string;
}

interface ClaimedRow {
  key: string;
  resource_type: string;
  resource_id: string;
  version_id: string;
  candidates: string[];
  matched: string[];
  attempts: number;
  lease: string;
}

/**
 * The writes waiting for the match job (docs/referrals.md, Matching): the module's own narrow
 * table, not resource SQL, worked as `subscription_notification` is. The write inserts one row in
 * its own transaction; workers claim batches with FOR UPDATE SKIP LOCKED and a lease (nothing in
 * process memory decides who judges a row, so any number of nodes may run workers), and delete a
 * batch in the transaction that inserts its notifications. A row whose worker died is claimed
 * again once its lease passed.
 */
@Injectable()
export class SubscriptionMatchesPending {
  constructor(@InjectDataSource() private readonly db: DataSource) {}

  /** One write's pending match, in `tx`, the write's transaction (the outbox). */
  async add(tx: EntityManager, match: MatchJobData): Promise<void> {
    if (!tx.queryRunner?.isTransactionActive) throw new Error('subscription match added outside a transaction');
    const insert = {
      text: `INSERT INTO subscription_match_pending (resource_type, resource_id, version_id, candidates, matched) VALUES ($1, $2, $3, $4::text[], $5::text[])`,
      values: [match.resourceType, match.id, match.versionId, match.candidates, match.matched],
    };
    // In a write's session: with its audit rows, in one statement right before COMMIT.
    const session = StorageSession.of(tx);
    if (session?.transactional) session.deferInsert(insert);
    else await tx.query(insert.text, insert.values);
  }

  /**
   * Claims up to `limit` due rows, oldest first, for `leaseSeconds` (as
   * `SubscriptionNotifications.claim`): rows locked by a concurrent claim are skipped, rows leased
   * by a live worker are not due, rows whose lease passed are.
   */
  async claim(limit: number, leaseSeconds: number): Promise<ClaimedMatches | undefined> {
    const rows: ClaimedRow[] = await this.db.query(
      `WITH claimed AS (
         UPDATE subscription_match_pending SET claimed_until = now() + make_interval(secs => $2)
          WHERE id = ANY(ARRAY(
            SELECT id FROM subscription_match_pending
             WHERE next_attempt_at <= now() AND (claimed_until IS NULL OR claimed_until < now())
             ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED))
          RETURNING id, resource_type, resource_id, version_id, candidates, matched, attempts, claimed_until)
       SELECT id::text AS key, resource_type, resource_id, version_id, candidates, matched, attempts, claimed_until::text AS lease FROM claimed ORDER BY id`,
      [limit, leaseSeconds],
    );
    if (!rows.length) return undefined;
    return {
      lease: rows[0].lease,
      matches: rows.map((r) => ({ key: r.key, resourceType: r.resource_type, id: r.resource_id, versionId: r.version_id, candidates: r.candidates, matched: r.matched, attempts: r.attempts })),
    };
  }

  /**
   * Deletes a judged batch in `tx`, the transaction that inserts its notifications, fenced to
   * `lease`: answers how many were still this worker's (rows reclaimed elsewhere, or judged and
   * deleted already, are not).
   */
  async completeIn(tx: EntityManager, batch: ClaimedMatches): Promise<number> {
    if (!tx.queryRunner?.isTransactionActive) throw new Error('subscription matches completed outside a transaction');
    const [{ n }]: { n: number }[] = await tx.query(
      `WITH gone AS (DELETE FROM subscription_match_pending WHERE claimed_until = $1::timestamptz AND id = ANY($2::bigint[]) RETURNING 1) SELECT count(*)::int AS n FROM gone`,
      [batch.lease, batch.matches.map((m) => m.key)],
    );
    return n;
  }

  /**
   * A failed batch: each row still this worker's counts an attempt and waits its backoff, unclaimed
   * (`delay * 2^attempts * (1 + random)`, capped), or, after `retryLimit` retries, is given up: never
   * due again (next_attempt_at 'infinity'), kept for an operator. Answers the keys given up.
   */
  async failed(batch: ClaimedMatches, policy: RetryPolicy): Promise<string[]> {
    const rows: { key: string; given_up: boolean }[] = await this.db.query(
      `WITH retried AS (
         UPDATE subscription_match_pending
            SET attempts = attempts + 1, claimed_until = NULL,
                next_attempt_at = CASE WHEN attempts >= $3 THEN 'infinity'::timestamptz
                  ELSE now() + LEAST($5::float8, GREATEST($4::float8, 1) * 2 ^ LEAST(16, attempts) * (1 + random())) * interval '1 second' END
          WHERE claimed_until = $1::timestamptz AND id = ANY($2::bigint[])
          RETURNING id, next_attempt_at = 'infinity' AS given_up)
       SELECT id::text AS key, given_up FROM retried`,
      [batch.lease, batch.matches.map((m) => m.key), policy.retryLimit, policy.retryDelaySeconds, policy.retryDelayMaxSeconds],
    );
    return rows.filter((r) => r.given_up).map((r) => r.key);
  }

  /** Matches not yet judged, and those given up (tests, the benchmark's drain). */
  async pending(): Promise<{ open: number; givenUp: number }> {
    const [row]: { open: number; givenUp: number }[] = await this.db.query(
      `SELECT count(*) FILTER (WHERE next_attempt_at <> 'infinity')::int AS open, count(*) FILTER (WHERE next_attempt_at = 'infinity')::int AS "givenUp" FROM subscription_match_pending`,
    );
    return row;
  }
}
