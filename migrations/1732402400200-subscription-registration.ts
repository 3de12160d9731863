import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Rest-hook Subscriptions' server-side state (docs/referrals.md, Subscriptions): one row per
 * stored Subscription, kept by its write listener in the Subscription write's transaction. It holds
 * what the resource must not show (the HMAC secret: write-only) or cannot hold (the owning client's
 * principal the matcher and the worker act as), the parsed criteria the matcher reads per write
 * (by resource type), and the delivery failure count that moves the Subscription to `error`.
 */
export class SubscriptionRegistration1732402400200 implements MigrationInterface {
  name = 'SubscriptionRegistration1732402400200';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE subscription_registration (
        id              text PRIMARY KEY,
        resource_type   text NOT NULL,
        criteria        text NOT NULL,
        status          text NOT NULL,
        endpoint        text NOT NULL,
        payload         text,
        headers         text[] NOT NULL DEFAULT '{}',
        secret          text,
        principal       jsonb NOT NULL,
        custodian_org   text,
        failure_count   integer NOT NULL DEFAULT 0,
        last_error      text,
        last_failure_at timestamptz,
        updated_at      timestamptz NOT NULL DEFAULT now()
      )`);
    // The matcher's candidates of a written type.
    await q.query(`CREATE INDEX subscription_registration_type_idx ON subscription_registration (resource_type) WHERE status IN ('active', 'error')`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE subscription_registration`);
  }
}
