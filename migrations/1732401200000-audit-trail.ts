import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The stored audit trail (docs/audit.md): AuditEvents in an append-only table partitioned by month
 * of `recorded`, searchable columns beside the JSON, and a SHA-256 hash chain assigned in one place
 * (`audit_append`, under the row lock of `audit_chain_head`), so chain order is commit order on
 * every app node.
 */
export class AuditTrail1732401200000 implements MigrationInterface {
  name = 'AuditTrail1732401200000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE audit_event (
        seq        bigint      NOT NULL,
        id         uuid        NOT NULL,
        recorded   timestamptz NOT NULL,
        type       text        NOT NULL,
        subtype    text[]      NOT NULL,
        action     text        NOT NULL,
        outcome    text        NOT NULL,
        agent      text[]      NOT NULL,
        patients   text[]      NOT NULL,
        entities   text[]      NOT NULL,
        purpose    text,
        content    jsonb       NOT NULL,
        prev_hash  bytea       NOT NULL,
        hash       bytea       NOT NULL,
        PRIMARY KEY (seq, recorded)
      ) PARTITION BY RANGE (recorded)`);
    await q.query(`CREATE INDEX audit_event_recorded ON audit_event (recorded)`);
    await q.query(`CREATE INDEX audit_event_id ON audit_event (id)`);
    await q.query(`CREATE INDEX audit_event_patients ON audit_event USING gin (patients)`);
    await q.query(`CREATE INDEX audit_event_entities ON audit_event USING gin (entities)`);
    await q.query(`CREATE INDEX audit_event_agent ON audit_event USING gin (agent)`);

    // The chain head: last sequence number and hash. Its row lock is the single sequencer.
    await q.query(`
      CREATE TABLE audit_chain_head (
        id   integer PRIMARY KEY CHECK (id = 1),
        seq  bigint  NOT NULL,
        hash bytea   NOT NULL
      )`);
    await q.query(`INSERT INTO audit_chain_head VALUES (1, 0, sha256(convert_to('hie-audit-chain-genesis', 'UTF8')))`);

    // What a link hashes: every column a search or report reads, in a time-zone-independent text form.
    await q.query(`
      CREATE FUNCTION audit_event_digest(
        id uuid, recorded timestamptz, type text, subtype text[], action text, outcome text,
        agent text[], patients text[], entities text[], purpose text, content jsonb
      ) RETURNS bytea LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT sha256(convert_to(jsonb_build_array(
          id::text, extract(epoch FROM recorded)::text, type, to_jsonb(subtype), action, outcome,
          to_jsonb(agent), to_jsonb(patients), to_jsonb(entities), purpose, content)::text, 'UTF8'))
      $$`);
    await q.query(`
      CREATE FUNCTION audit_link(prev_hash bytea, seq bigint, digest bytea)
      RETURNS bytea LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT sha256(prev_hash || int8send(seq) || digest)
      $$`);

    // Appends a batch (a jsonb array of records) in one call: locks the head, chains, inserts.
    await q.query(`
      CREATE FUNCTION audit_append(records jsonb) RETURNS bigint LANGUAGE plpgsql AS $$
      DECLARE
        s bigint;
        h bytea;
        r jsonb;
        rec timestamptz;
        nh bytea;
      BEGIN
        SELECT head.seq, head.hash INTO s, h FROM audit_chain_head head WHERE head.id = 1 FOR UPDATE;
        FOR r IN SELECT value FROM jsonb_array_elements(records) LOOP
          s := s + 1;
          rec := (r->>'recorded')::timestamptz;
          nh := audit_link(h, s, audit_event_digest(
            (r->>'id')::uuid, rec, r->>'type', ARRAY(SELECT jsonb_array_elements_text(r->'subtype')), r->>'action', r->>'outcome',
            ARRAY(SELECT jsonb_array_elements_text(r->'agent')),
            ARRAY(SELECT jsonb_array_elements_text(r->'patients')),
            ARRAY(SELECT jsonb_array_elements_text(r->'entities')),
            r->>'purpose', r->'content'));
          INSERT INTO audit_event (seq, id, recorded, type, subtype, action, outcome, agent, patients, entities, purpose, content, prev_hash, hash)
          VALUES (s, (r->>'id')::uuid, rec, r->>'type', ARRAY(SELECT jsonb_array_elements_text(r->'subtype')), r->>'action', r->>'outcome',
            ARRAY(SELECT jsonb_array_elements_text(r->'agent')),
            ARRAY(SELECT jsonb_array_elements_text(r->'patients')),
            ARRAY(SELECT jsonb_array_elements_text(r->'entities')),
            r->>'purpose', r->'content', h, nh);
          h := nh;
        END LOOP;
        UPDATE audit_chain_head SET seq = s, hash = h WHERE id = 1;
        RETURN s;
      END $$`);

    // Append-only: the database refuses changes whatever the client (privileges: docs/audit.md).
    await q.query(`
      CREATE FUNCTION audit_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION 'audit_event is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
      END $$`);
    await q.query(`CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_event FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()`);
    await q.query(`CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only()`);

    // Monthly partitions, created ahead by the app (at start and daily) and here; a DEFAULT
    // partition catches anything outside them so an append never fails for want of a partition.
    await q.query(`
      CREATE FUNCTION audit_ensure_partitions(months_ahead integer) RETURNS void LANGUAGE plpgsql AS $$
      DECLARE
        m date := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
        name text;
      BEGIN
        PERFORM pg_advisory_xact_lock(hashtext('audit_ensure_partitions'));
        FOR i IN 0..months_ahead LOOP
          name := 'audit_event_' || to_char(m, 'YYYY_MM');
          IF to_regclass(name) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF audit_event FOR VALUES FROM (%L) TO (%L)',
              name, (m::timestamp AT TIME ZONE 'UTC'), ((m + interval '1 month')::timestamp AT TIME ZONE 'UTC'));
            -- TRUNCATE of a partition by name does not fire the parent's statement trigger.
            EXECUTE format('CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only()', name);
          END IF;
          m := (m + interval '1 month')::date;
        END LOOP;
      END $$`);
    await q.query(`CREATE TABLE audit_event_default PARTITION OF audit_event DEFAULT`);
    await q.query(`CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event_default FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only()`);
    await q.query(`SELECT audit_ensure_partitions(2)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE audit_event`);
    await q.query(`DROP TABLE audit_chain_head`);
    await q.query(`DROP FUNCTION audit_append(jsonb), audit_ensure_partitions(integer), audit_event_append_only(), audit_link(bytea, bigint, bytea),
      audit_event_digest(uuid, timestamptz, text, text[], text, text, text[], text[], text[], text, jsonb)`);
  }
}
