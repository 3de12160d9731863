import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Permits follow only Person links (docs/consent.md, Linked records): `patient_link.via_person`
 * marks the pairs of the closure that are joined by Person links alone (the identity module's
 * MPI-certain or admin-confirmed links, sources `Person/{id}`), not by a hospital's own
 * `Patient.link`. Denials keep following every pair; permits and the linked records that
 * `$everything` and compartment searches include follow only these. And the kept admin decisions
 * (docs/identity.md): `identity_no_match`, pairs an HIE admin declared different people, which
 * matching never links again.
 */
export class PersonLinkPermits1732402400160 implements MigrationInterface {
  name = 'PersonLinkPermits1732402400160';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE patient_link ADD COLUMN via_person boolean NOT NULL DEFAULT false`);
    await q.query(`
      WITH RECURSIVE reach(origin, node) AS (
        SELECT DISTINCT patient_id, patient_id FROM patient_link_assertion WHERE source LIKE 'Person/%'
        UNION
        SELECT r.origin, a.linked_id FROM reach r JOIN patient_link_assertion a ON a.patient_id = r.node AND a.source LIKE 'Person/%'
      )
      UPDATE patient_link l SET via_person = true FROM reach WHERE l.patient_id = reach.origin AND l.linked_id = reach.node`);
    await q.query(`
      CREATE TABLE identity_no_match (
        patient_id   text NOT NULL,
        candidate_id text NOT NULL,
        decided_by   text NOT NULL,
        decided_at   timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (patient_id, candidate_id),
        CHECK (patient_id < candidate_id)
      )`);
    await q.query(`CREATE INDEX identity_no_match_candidate_idx ON identity_no_match (candidate_id)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE identity_no_match`);
    await q.query(`ALTER TABLE patient_link DROP COLUMN via_person`);
  }
}
