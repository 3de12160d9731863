import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Every change of a registered client (disable, enable, secret rotation, any code path: admin API,
 * CLI, SQL) notifies the `oauth_client_changed` channel with the client id. Delivered on commit,
 * never for a rollback, so every node drops its cached registration exactly when the change becomes
 * visible (ClientRegistrationCache).
 */
export class OauthClientNotify1732401300000 implements MigrationInterface {
  name = 'OauthClientNotify1732401300000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE FUNCTION notify_oauth_client_changed() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        PERFORM pg_notify('oauth_client_changed', COALESCE(NEW.client_id, OLD.client_id));
        RETURN NULL;
      END $$`);
    await q.query(`
      CREATE TRIGGER oauth_client_changed
        AFTER INSERT OR UPDATE OR DELETE ON oauth_client
        FOR EACH ROW EXECUTE FUNCTION notify_oauth_client_changed()`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TRIGGER oauth_client_changed ON oauth_client`);
    await q.query(`DROP FUNCTION notify_oauth_client_changed()`);
  }
}
