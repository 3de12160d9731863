import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Rest-hook notifications waiting for delivery (docs/referrals.md, Delivery): a narrow outbox of
 * the subscriptions module's own instead of one pg-boss job per notification. A pg-boss job is a
 * wide row with several indexes, inserted, updated on fetch, updated on completion and deleted
 * later by maintenance; a notification here is one narrow row with one index, inserted by the
 * match job (one statement per batch), claimed with a lease (one statement per batch) and deleted
 * once sent (one statement per batch).
 *
 * `id` is the notification's stable id (`X-Notification-Id`, derived from Subscription, resource
 * and version), so a match job run twice inserts it once. `claimed_until` is a worker's lease: a
 * row whose worker died is claimable again once it passed. `attempts` counts the attempts made.
 */
export class SubscriptionNotification1732402400400 implements MigrationInterface {
  name = 'SubscriptionNotification1732402400400';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE subscription_notification (
        id              uuid PRIMARY KEY,
        subscription_id text NOT NULL,
        resource_type   text NOT NULL,
        resource_id     text NOT NULL,
        version_id      text NOT NULL,
        attempts        integer NOT NULL DEFAULT 0,
        next_attempt_at timestamptz NOT NULL DEFAULT now(),
        claimed_until   timestamptz,
        created_at      timestamptz NOT NULL DEFAULT now()
      )`);
    // "Due, oldest first": the claim walks this index from the oldest due row; rows in flight
    // (leased) are few and skipped by the claim's filter, so no second index is needed for them.
    await q.query(`CREATE INDEX subscription_notification_due_idx ON subscription_notification (next_attempt_at)`);
    // Notifications still queued as pg-boss jobs by the previous version move here with their id,
    // attempts and next attempt, so none is lost or sent under a new id across the upgrade.
    await q.query(`
      INSERT INTO subscription_notification (id, subscription_id, resource_type, resource_id, version_id, attempts, next_attempt_at, created_at)
      SELECT id, data->>'subscriptionId', data->>'resourceType', data->>'id', data->>'versionId', retry_count, start_after, created_on
        FROM pgboss.job WHERE name = 'subscription.notify' AND state IN ('created', 'retry', 'active')
      ON CONFLICT (id) DO NOTHING`);
    // pg-boss's own removal of a queue (its jobs, then its row).
    await q.query(`SELECT pgboss.delete_queue(name) FROM pgboss.queue WHERE name = 'subscription.notify'`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE subscription_notification`);
  }
}
