import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Least privilege: the app runs as `hie_app` (the embedded cluster creates it; with DATABASE_URL the
 * operator does, see docs/security.md) and may only read and write rows — no DDL, no roles, no
 * TRUNCATE. Default privileges give the same to tables and sequences that later migrations create
 * (as the role running migrations); a table that must be append-only (audit) revokes UPDATE and
 * DELETE from hie_app in its own migration. Without the role (a single DATABASE_URL) nothing changes.
 */
export class AppRolePrivileges1732400000900 implements MigrationInterface {
  name = 'AppRolePrivileges1732400000900';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      DO $$
      BEGIN
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hie_app') THEN
          GRANT USAGE ON SCHEMA public TO hie_app;
          GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO hie_app;
          GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO hie_app;
          ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO hie_app;
          ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO hie_app;
        END IF;
      END $$`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`
      DO $$
      BEGIN
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hie_app') THEN
          ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM hie_app;
          ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON SEQUENCES FROM hie_app;
          REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM hie_app;
          REVOKE ALL ON ALL TABLES IN SCHEMA public FROM hie_app;
          REVOKE USAGE ON SCHEMA public FROM hie_app;
        END IF;
      END $$`);
  }
}
