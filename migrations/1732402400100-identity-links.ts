import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The master patient index's own bookkeeping (docs/identity.md): which Person each Patient is
 * linked to (`identity_person_link`: at most one Person per Patient, its assurance, how it was
 * decided and the score), and the pairs already sent to HIE admins for review
 * (`identity_review`), so a rerun of a matching job neither relinks nor asks twice. The Person
 * resources themselves are ordinary stored resources; their links feed consent's
 * `patient_link_assertion` under the source `Person/{id}`.
 */
export class IdentityLinks1732402400100 implements MigrationInterface {
  name = 'IdentityLinks1732402400100';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE identity_person_link (
        patient_id text PRIMARY KEY,
        person_id  text NOT NULL,
        assurance  text NOT NULL,
        decided_by text NOT NULL,
        score      numeric,
        linked_at  timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`CREATE INDEX identity_person_link_person_idx ON identity_person_link (person_id)`);
    await q.query(`
      CREATE TABLE identity_review (
        patient_id   text NOT NULL,
        candidate_id text NOT NULL,
        task_id      text NOT NULL,
        weight       numeric NOT NULL,
        created_at   timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (patient_id, candidate_id)
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE identity_review`);
    await q.query(`DROP TABLE identity_person_link`);
  }
}
