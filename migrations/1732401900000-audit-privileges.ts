import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The audit trail's privileges, applied (docs/audit.md, append-only): migration 900's default
 * privileges gave `hie_app` SELECT, INSERT, UPDATE, DELETE on the audit tables. Now the app may
 * only read them and append through `audit_append`, which runs as the tables' owner (SECURITY
 * DEFINER, fixed search_path), so it alone numbers, chains and moves the head. Partitions get no
 * privilege of their own for the app (it reaches rows through the parent), including partitions
 * created later: `audit_ensure_partitions` (also SECURITY DEFINER, so any node may run it) and,
 * where the owner is a superuser, an event trigger for partitions a DBA creates or attaches by hand
 * (the schema's default privileges would otherwise grant them UPDATE and DELETE). The append-only
 * trigger stays: it is what holds when the app and the owner are one role (a single DATABASE_URL).
 */
export class AuditPrivileges1732401900000 implements MigrationInterface {
  name = 'AuditPrivileges1732401900000';

  async up(q: QueryRunner): Promise<void> {
    // Revokes every privilege of hie_app on the partitions of audit_event (no-op without the role).
    await q.query(`
      CREATE FUNCTION audit_restrict_partitions() RETURNS void LANGUAGE plpgsql AS $$
      DECLARE
        part regclass;
      BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hie_app') THEN
          RETURN;
        END IF;
        FOR part IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'audit_event'::regclass LOOP
          EXECUTE format('REVOKE ALL ON %s FROM hie_app', part);
        END LOOP;
      END $$`);
    await q.query(`
      CREATE OR REPLACE FUNCTION audit_ensure_partitions(months_ahead integer) RETURNS void LANGUAGE plpgsql AS $$
      DECLARE
        m date := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
        name text;
        created boolean := false;
      BEGIN
        PERFORM pg_advisory_xact_lock(hashtext('audit_ensure_partitions'));
        FOR i IN 0..months_ahead LOOP
          name := 'audit_event_' || to_char(m, 'YYYY_MM');
          IF to_regclass(name) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF audit_event FOR VALUES FROM (%L) TO (%L)',
              name, (m::timestamp AT TIME ZONE 'UTC'), ((m + interval '1 month')::timestamp AT TIME ZONE 'UTC'));
            -- TRUNCATE of a partition by name does not fire the parent's statement trigger.
            EXECUTE format('CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only()', name);
            created := true;
          END IF;
          m := (m + interval '1 month')::date;
        END LOOP;
        -- A new partition took the schema's default privileges (UPDATE, DELETE for hie_app).
        IF created THEN
          PERFORM audit_restrict_partitions();
        END IF;
      END $$`);
    await q.query(`
      DO $$
      DECLARE
        schema_name text := current_schema();
      BEGIN
        -- Run as the owner whoever calls them; a fixed search_path so a caller cannot substitute objects.
        EXECUTE format('ALTER FUNCTION audit_append(uuid[], timestamptz[], text[], text[], text[], text[], text[], text[], text[], text[], text[]) SECURITY DEFINER SET search_path = %I, pg_temp', schema_name);
        EXECUTE format('ALTER FUNCTION audit_ensure_partitions(integer) SECURITY DEFINER SET search_path = %I, pg_temp', schema_name);
        EXECUTE format('ALTER FUNCTION audit_restrict_partitions() SET search_path = %I, pg_temp', schema_name);
        REVOKE ALL ON FUNCTION audit_append(uuid[], timestamptz[], text[], text[], text[], text[], text[], text[], text[], text[], text[]), audit_ensure_partitions(integer), audit_restrict_partitions() FROM PUBLIC;
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hie_app') THEN
          REVOKE ALL ON audit_event, audit_chain_head FROM hie_app;
          GRANT SELECT ON audit_event, audit_chain_head TO hie_app;
          GRANT EXECUTE ON FUNCTION audit_append(uuid[], timestamptz[], text[], text[], text[], text[], text[], text[], text[], text[], text[]), audit_ensure_partitions(integer) TO hie_app;
          PERFORM audit_restrict_partitions();
        END IF;
      END $$`);
    // Partitions made or attached by hand (not through audit_ensure_partitions). Event triggers
    // need a superuser; an owner that is not one relies on audit_ensure_partitions (docs/audit.md).
    await q.query(`
      DO $$
      BEGIN
        IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
          CREATE FUNCTION audit_partition_created() RETURNS event_trigger LANGUAGE plpgsql AS $f$
          BEGIN
            IF to_regclass('audit_event') IS NOT NULL AND EXISTS (
              SELECT 1 FROM pg_event_trigger_ddl_commands() c
              WHERE c.objid = 'audit_event'::regclass
                 OR c.objid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'audit_event'::regclass)) THEN
              PERFORM audit_restrict_partitions();
            END IF;
          END $f$;
          EXECUTE format('ALTER FUNCTION audit_partition_created() SET search_path = %I, pg_temp', current_schema());
          CREATE EVENT TRIGGER audit_partition_created ON ddl_command_end WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE')
            EXECUTE FUNCTION audit_partition_created();
        END IF;
      END $$`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP EVENT TRIGGER IF EXISTS audit_partition_created`);
    await q.query(`DROP FUNCTION IF EXISTS audit_partition_created()`);
    await q.query(`ALTER FUNCTION audit_append(uuid[], timestamptz[], text[], text[], text[], text[], text[], text[], text[], text[], text[]) SECURITY INVOKER RESET search_path`);
    await q.query(`ALTER FUNCTION audit_ensure_partitions(integer) SECURITY INVOKER RESET search_path`);
    await q.query(`GRANT EXECUTE ON FUNCTION audit_append(uuid[], timestamptz[], text[], text[], text[], text[], text[], text[], text[], text[], text[]), audit_ensure_partitions(integer) TO PUBLIC`);
    await q.query(`
      DO $$
      BEGIN
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hie_app') THEN
          GRANT SELECT, INSERT, UPDATE, DELETE ON audit_event, audit_chain_head TO hie_app;
        END IF;
      END $$`);
    // audit_restrict_partitions stays: audit_ensure_partitions (as replaced here) calls it.
  }
}
