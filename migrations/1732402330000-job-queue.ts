import { getConstructionPlans } from 'pg-boss';
import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The job queue (src/jobs/, docs/architecture.md "Jobs and the outbox"): pg-boss's tables in the
 * schema `pgboss` of the same database, so a job is enqueued in the transaction of the write that
 * causes it. The schema is built here, by the schema owner, from pg-boss's own construction plan
 * (the app's role may not run DDL, so pg-boss runs with `migrate: false`); its version is pinned in
 * package-lock.json, and an upgrade that changes pg-boss's schema needs a migration of its own
 * (`getMigrationPlans`). The plan brings its own BEGIN/COMMIT, so this migration runs outside
 * TypeORM's transaction. Queues are not partitioned, so creating one is DML that `hie_app` may do.
 */
export class JobQueue1732402330000 implements MigrationInterface {
  name = 'JobQueue1732402330000';
  transaction = false as const;

  async up(q: QueryRunner): Promise<void> {
    await q.query(getConstructionPlans('pgboss'));
    await q.query(`
      DO $$
      BEGIN
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hie_app') THEN
          GRANT USAGE ON SCHEMA pgboss TO hie_app;
          GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA pgboss TO hie_app;
          GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA pgboss TO hie_app;
          GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA pgboss TO hie_app;
        END IF;
      END $$`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP SCHEMA IF EXISTS pgboss CASCADE');
  }
}
