import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * `Subscription.end` (R4: the time for the server to turn the Subscription off): kept beside the
 * registration so matching leaves an ended Subscription out (docs/referrals.md, Subscriptions).
 * Registrations stored before this migration keep NULL (no end) until their next write; the
 * Subscriptions with an `end` among them are filled from their current resource row here.
 */
export class SubscriptionRegistrationEnd1732402400510 implements MigrationInterface {
  name = 'SubscriptionRegistrationEnd1732402400510';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE subscription_registration ADD COLUMN ends_at timestamptz`);
    await q.query(`
      UPDATE subscription_registration g SET ends_at = (r.content->>'end')::timestamptz
        FROM resource r
       WHERE r.resource_type = 'Subscription' AND r.id = g.id AND r.content->>'end' ~ '^\d{4}-\d{2}-\d{2}T'`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE subscription_registration DROP COLUMN ends_at`);
  }
}
