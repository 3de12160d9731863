import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Writes waiting for the rest-hook match job (docs/referrals.md, Matching): a narrow outbox of the
 * subscriptions module's own instead of one pg-boss job (queue `subscription.match`) per write, as
 * 1732402400400 did for the notifications. A pg-boss job is a wide row with several indexes,
 * inserted in the write, updated on fetch, updated on completion and deleted later by maintenance;
 * a pending match here is one narrow row, inserted in the write, claimed with a lease (one
 * statement per batch) and deleted in the transaction that inserts its notifications.
 *
 * `candidates` and `matched` are the job's data (Subscription ids whose criteria the write decided
 * in memory / in its matching statement). `claimed_until` is a worker's lease; `attempts` counts the
 * failed attempts; `next_attempt_at` is 'infinity' for a match given up after the retry limit (kept
 * for an operator, as pg-boss kept a failed job).
 */
export class SubscriptionMatchPending1732402400500 implements MigrationInterface {
  name = 'SubscriptionMatchPending1732402400500';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE subscription_match_pending (
        id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        resource_type   text NOT NULL,
        resource_id     text NOT NULL,
        version_id      text NOT NULL,
        candidates      text[] NOT NULL,
        matched         text[] NOT NULL,
        attempts        integer NOT NULL DEFAULT 0,
        next_attempt_at timestamptz NOT NULL DEFAULT now(),
        claimed_until   timestamptz,
        created_at      timestamptz NOT NULL DEFAULT now()
      )`);
    // "Due, oldest first", as subscription_notification_due_idx: leased rows are few and filtered.
    await q.query(`CREATE INDEX subscription_match_pending_due_idx ON subscription_match_pending (next_attempt_at)`);
    // Match jobs still queued by the previous version move here with their attempts and next
    // attempt, so no write's match is lost across the upgrade.
    await q.query(`
      INSERT INTO subscription_match_pending (resource_type, resource_id, version_id, candidates, matched, attempts, next_attempt_at, created_at)
      SELECT data->>'resourceType', data->>'id', data->>'versionId',
             ARRAY(SELECT jsonb_array_elements_text(coalesce(data->'candidates', '[]'::jsonb))),
             ARRAY(SELECT jsonb_array_elements_text(coalesce(data->'matched', '[]'::jsonb))),
             retry_count, start_after, created_on
        FROM pgboss.job WHERE name = 'subscription.match' AND state IN ('created', 'retry', 'active')`);
    await q.query(`SELECT pgboss.delete_queue(name) FROM pgboss.queue WHERE name = 'subscription.match'`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE subscription_match_pending`);
  }
}
