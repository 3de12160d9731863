import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Every write of a SearchParameter resource (any code path: REST, Bundles, imports) notifies the
 * `search_parameter_changed` channel. NOTIFY is transactional: it is delivered on commit and never
 * for a rolled-back write, so every node reloads its search parameter registry exactly when the
 * change becomes visible. The WHEN clause keeps the cost for other resource types to a comparison.
 */
export class SearchParameterNotify1732400000400 implements MigrationInterface {
  name = 'SearchParameterNotify1732400000400';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE FUNCTION notify_search_parameter_changed() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        PERFORM pg_notify('search_parameter_changed', NEW.id);
        RETURN NULL;
      END $$`);
    await q.query(`
      CREATE TRIGGER search_parameter_changed
        AFTER INSERT OR UPDATE ON resource
        FOR EACH ROW WHEN (NEW.resource_type = 'SearchParameter')
        EXECUTE FUNCTION notify_search_parameter_changed()`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TRIGGER search_parameter_changed ON resource`);
    await q.query(`DROP FUNCTION notify_search_parameter_changed()`);
  }
}
