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
        content    json        NOT NULL,
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

    // What a link hashes: every column a search or report reads, in one text (arrays joined with
    // U+001E, fields with U+001F; ids and codes never contain them), and the AuditEvent JSON as
    // stored (a json column keeps the exact text, so nothing is re-serialized to verify).
    await q.query(`
      CREATE FUNCTION audit_event_digest(
        id uuid, recorded timestamptz, type text, subtype text, action text, outcome text,
        agent text, patients text, entities text, purpose text, content text
      ) RETURNS bytea LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT sha256(convert_to(concat_ws(E'\\x1f', id::text, extract(epoch FROM recorded)::text, type, subtype, action, outcome,
          agent, patients, entities, COALESCE(purpose, ''), content), 'UTF8'))
      $$`);
    await q.query(`
      CREATE FUNCTION audit_link(prev_hash bytea, seq bigint, digest bytea)
      RETURNS bytea LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT sha256(prev_hash || int8send(seq) || digest)
      $$`);

    // Appends a batch (parallel arrays, one element per record; array columns joined with U+001E)
    // in one call: locks the head, chains in order, inserts with one statement, moves the head.
    await q.query(`
      CREATE FUNCTION audit_append(
        ids uuid[], recorded timestamptz[], types text[], subtypes text[], actions text[], outcomes text[],
        agents text[], patients text[], entities text[], purposes text[], contents text[]
      ) RETURNS bigint LANGUAGE plpgsql AS $$
      DECLARE
        s bigint;
        h bytea;
        hashes bytea[] := '{}';
        n integer := cardinality(ids);
      BEGIN
        SELECT head.seq, head.hash INTO s, h FROM audit_chain_head head WHERE head.id = 1 FOR UPDATE;
        hashes := hashes || h;
        FOR i IN 1..n LOOP
          h := audit_link(h, s + i, audit_event_digest(ids[i], recorded[i], types[i], subtypes[i], actions[i], outcomes[i],
            agents[i], patients[i], entities[i], purposes[i], contents[i]));
          hashes := hashes || h;
        END LOOP;
        INSERT INTO audit_event (seq, id, recorded, type, subtype, action, outcome, agent, patients, entities, purpose, content, prev_hash, hash)
        SELECT s + u.o, u.id, u.rec, u.type, string_to_array(u.subtype, E'\\x1e'), u.action, u.outcome,
               string_to_array(u.agent, E'\\x1e'), string_to_array(u.patients, E'\\x1e'), string_to_array(u.entities, E'\\x1e'),
               u.purpose, u.content::json, hashes[u.o], hashes[u.o + 1]
        FROM unnest(ids, recorded, types, subtypes, actions, outcomes, agents, patients, entities, purposes, contents)
             WITH ORDINALITY AS u(id, rec, type, subtype, action, outcome, agent, patients, entities, purpose, content, o);
        UPDATE audit_chain_head SET seq = s + n, hash = h WHERE id = 1;
        RETURN s + n;
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
    await q.query(`DROP FUNCTION audit_append(uuid[], timestamptz[], text[], text[], text[], text[], text[], text[], text[], text[], text[]), audit_ensure_partitions(integer), audit_event_append_only(), audit_link(bytea, bigint, bytea),
      audit_event_digest(uuid, timestamptz, text, text, text, text, text, text, text, text, text)`);
  }
}
