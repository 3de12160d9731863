import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource, EntityManager } from 'typeorm';
import type { RetryPolicy } from './subscription-config';
import { notificationId, NotificationJobData } from './subscription-matching.listener';

/** A notification a worker claimed (migration 1732402400400): ids only. */
export interface ClaimedNotification extends NotificationJobData {
  /** The stable notification id (`X-Notification-Id`). */
  notificationId: string;
  /** Attempts made before this one (0 on the first). */
  attempts: number;
}

/** A claimed batch: its rows and the lease that fences what this worker may settle. */
export interface ClaimedBatch {
  notifications: ClaimedNotification[];
  /** `claimed_until` as PostgreSQL wrote it (full precision): a row reclaimed by another worker after it lapsed no longer carries it. */
  lease: string;
}

interface ClaimedRow {
  id: string;
  subscription_id: string;
  resource_type: string;
  resource_id: string;
  version_id: string;
  attempts: number;
  lease: string;
}

/**
 * The rest-hook outbox (docs/referrals.md, Delivery): the module's own narrow table, not resource
 * SQL. Every statement works on a whole batch: one insert per match-job batch, one claim, one
 * settle per delivery batch. Nothing in process memory decides who delivers: rows are claimed with
 * FOR UPDATE SKIP LOCKED and a lease, so any number of nodes may run workers, and a row whose
 * worker died is claimed again once its lease passed (at least once, same id).
 */
@Injectable()
export class SubscriptionNotifications {
  private readonly insertedListeners: (() => void)[] = [];

  constructor(@InjectDataSource() private readonly db: DataSource) {}

  /**
   * Inserts a batch's notifications in `tx` (the match job's transaction, which completes the match
   * jobs too) in one statement. A notification already queued (a match job run twice) is not
   * inserted again: its id is derived from (Subscription, resource, version).
   */
  async insertMany(tx: EntityManager, notifications: readonly NotificationJobData[]): Promise<void> {
    if (!notifications.length) return;
    if (!tx.queryRunner?.isTransactionActive) throw new Error('subscription notifications inserted outside a transaction');
    await tx.query(
      `INSERT INTO subscription_notification (id, subscription_id, resource_type, resource_id, version_id)
       SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[])
       ON CONFLICT (id) DO NOTHING`,
      [notifications.map(notificationId), notifications.map((n) => n.subscriptionId), notifications.map((n) => n.resourceType), notifications.map((n) => n.id), notifications.map((n) => n.versionId)],
    );
  }

  /** Called (on this node) after a transaction that inserted notifications committed: wakes the local worker. */
  onInserted(listener: () => void): void {
    this.insertedListeners.push(listener);
  }

  inserted(): void {
    for (const listener of this.insertedListeners) listener();
  }

  /**
   * Claims up to `limit` due rows, oldest first, for `leaseSeconds`: rows locked by a concurrent
   * claim are skipped (SKIP LOCKED), rows leased by a live worker are not due, rows whose lease
   * passed (their worker died) are. The subquery runs once (ARRAY), so the LIMIT holds.
   */
  async claim(limit: number, leaseSeconds: number): Promise<ClaimedBatch | undefined> {
    // Wrapped in a SELECT: TypeORM answers an UPDATE with [rows, count] instead of the rows.
    const rows: ClaimedRow[] = await this.db.query(
      `WITH claimed AS (
         UPDATE subscription_notification SET claimed_until = now() + make_interval(secs => $2)
          WHERE id = ANY(ARRAY(
            SELECT id FROM subscription_notification
             WHERE next_attempt_at <= now() AND (claimed_until IS NULL OR claimed_until < now())
             ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED))
          RETURNING id, subscription_id, resource_type, resource_id, version_id, attempts, claimed_until)
       SELECT id::text, subscription_id, resource_type, resource_id, version_id, attempts, claimed_until::text AS lease FROM claimed ORDER BY id`,
      [limit, leaseSeconds],
    );
    if (!rows.length) return undefined;
    return {
      lease: rows[0].lease,
      notifications: rows.map((r) => ({ notificationId: r.id, subscriptionId: r.subscription_id, resourceType: r.resource_type, id: r.resource_id, versionId: r.version_id, attempts: r.attempts })),
    };
  }

  /**
   * Settles a delivered batch in one statement: `done` (delivered or dropped) are deleted; `failed`
   * count an attempt and wait their backoff, unclaimed, or are deleted (given up) when that was the
   * last retry. Fenced to `lease`: a row another worker reclaimed meanwhile is left to it. Answers
   * the ids given up.
   */
  async settle(lease: string, done: readonly string[], failed: readonly string[], policy: RetryPolicy): Promise<string[]> {
    if (!done.length && !failed.length) return [];
    const rows: { id: string }[] = await this.db.query(
      `WITH gone AS (
         DELETE FROM subscription_notification
          WHERE claimed_until = $1::timestamptz
            AND (id = ANY($2::uuid[]) OR (id = ANY($3::uuid[]) AND attempts >= $4))
          RETURNING id, id = ANY($3::uuid[]) AS given_up),
       retried AS (
         UPDATE subscription_notification
            SET attempts = attempts + 1, claimed_until = NULL,
                next_attempt_at = now() + LEAST($6::float8, GREATEST($5::float8, 1) * 2 ^ LEAST(16, attempts) * (1 + random())) * interval '1 second'
          WHERE claimed_until = $1::timestamptz AND id = ANY($3::uuid[]) AND attempts < $4
          RETURNING id)
       SELECT id::text FROM gone WHERE given_up`,
      [lease, done, failed, policy.retryLimit, policy.retryDelaySeconds, policy.retryDelayMaxSeconds],
    );
    return rows.map((r) => r.id);
  }

  /** Notifications not yet delivered (tests, the benchmark's drain). */
  async pending(): Promise<number> {
    const [{ n }]: { n: number }[] = await this.db.query(`SELECT count(*)::int AS n FROM subscription_notification`);
    return n;
  }
}
