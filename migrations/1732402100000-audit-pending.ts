import type { MigrationInterface, QueryRunner } from 'typeorm';


/**
 * Writes no longer hold the chain head across their commit (issue 11: every write's COMMIT, with
 * its WAL flush, ran under the single head lock, so audit serialized the whole server). A write's
 * records are inserted into `audit_pending` in the write's own transaction (atomic with the write,
 * no lock), and `audit_append` — called by the group-commit writer only — first moves every
 * committed pending record into the chain, then appends its own batch, under the head lock in its
 * own short transaction. Chain order stays one total order on every node (docs/audit.md).
 */
export class AuditPending1732402100000 implements MigrationInterface {
  name = 'AuditPending1732402100000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE audit_pending (
        pending_seq bigserial PRIMARY KEY,
        id        uuid        NOT NULL,
        recorded  timestamptz NOT NULL,
        type      text        NOT NULL,
        subtype   text        NOT NULL,
        action    text        NOT NULL,
        outcome   text        NOT NULL,
        agent     text        NOT NULL,
        patients  text        NOT NULL,
        entities  text        NOT NULL,
        purpose   text,
        content   text        NOT NULL
      )`);
    await q.query(appendFunction(true));
    await q.query(RUN_AS_OWNER);
    // The app role queues write records and may read them; only audit_append (as the owner) moves them.
    await q.query(`
      DO $$
      BEGIN
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hie_app') THEN
          REVOKE ALL ON audit_pending FROM hie_app;
          GRANT SELECT, INSERT ON audit_pending TO hie_app;
          GRANT USAGE ON SEQUENCE audit_pending_pending_seq_seq TO hie_app;
        END IF;
      END $$`);
  }

  async down(q: QueryRunner): Promise<void> {
    // Pending records are chained before the table goes.
    await q.query(`SELECT audit_append('{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}')`);
    await q.query(`DROP TABLE audit_pending`);
    await q.query(appendFunction(false));
    await q.query(RUN_AS_OWNER);
  }
}

/**
 * CREATE OR REPLACE resets a function's properties: audit_append runs as the tables' owner with a
 * fixed search_path again (migration 1732401900000, audit privileges).
 */
const RUN_AS_OWNER = `
      DO $$
      BEGIN
        EXECUTE format('ALTER FUNCTION audit_append(uuid[], timestamptz[], text[], text[], text[], text[], text[], text[], text[], text[], text[]) SECURITY DEFINER SET search_path = %I, pg_temp', current_schema());
      END $$`;

const MOVE_PENDING = `
        -- Committed write records first (their transactions ended before this lock was taken), in
        -- the order they were inserted; then this batch.
        WITH moved AS (DELETE FROM audit_pending RETURNING *)
        SELECT array_agg(m.id ORDER BY m.pending_seq) AS ids, array_agg(m.recorded ORDER BY m.pending_seq) AS recorded,
               array_agg(m.type ORDER BY m.pending_seq) AS types, array_agg(m.subtype ORDER BY m.pending_seq) AS subtypes,
               array_agg(m.action ORDER BY m.pending_seq) AS actions, array_agg(m.outcome ORDER BY m.pending_seq) AS outcomes,
               array_agg(m.agent ORDER BY m.pending_seq) AS agents, array_agg(m.patients ORDER BY m.pending_seq) AS patients,
               array_agg(m.entities ORDER BY m.pending_seq) AS entities, array_agg(m.purpose ORDER BY m.pending_seq) AS purposes,
               array_agg(m.content ORDER BY m.pending_seq) AS contents
          INTO p FROM moved m;
        IF p.ids IS NOT NULL THEN
          ids := p.ids || ids; recorded := p.recorded || recorded; types := p.types || types; subtypes := p.subtypes || subtypes;
          actions := p.actions || actions; outcomes := p.outcomes || outcomes; agents := p.agents || agents;
          patients := p.patients || patients; entities := p.entities || entities; purposes := p.purposes || purposes;
          contents := p.contents || contents;
        END IF;
`;

/** The append function, with or without the move of pending write records (down restores the latter). */
function appendFunction(withPending: boolean): string {
  return `
      CREATE OR REPLACE FUNCTION audit_append(
        ids uuid[], recorded timestamptz[], types text[], subtypes text[], actions text[], outcomes text[],
        agents text[], patients text[], entities text[], purposes text[], contents text[]
      ) RETURNS bigint LANGUAGE plpgsql AS $$
      DECLARE
        s bigint;
        h bytea;
        hashes bytea[] := '{}';
        n integer;
        p record;
      BEGIN
        SELECT head.seq, head.hash INTO s, h FROM audit_chain_head head WHERE head.id = 1 FOR UPDATE;
${withPending ? MOVE_PENDING : ''}        n := coalesce(cardinality(ids), 0);
        IF n = 0 THEN
          RETURN s;
        END IF;
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
      END $$`;
}
