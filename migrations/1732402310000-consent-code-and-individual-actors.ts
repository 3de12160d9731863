import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * provision.code and individual actors (issue 22.17, docs/consent.md): a provision row may name a
 * Practitioner, PractitionerRole or CareTeam (`actor_ref`, matched against the token's
 * `on_behalf_of`) and a Coding the judged row must carry in its `code` search index
 * (`code_system`, `code`). NULL = any, as for the other criteria; existing rows keep their meaning.
 */
export class ConsentCodeAndIndividualActors1732402310000 implements MigrationInterface {
  name = 'ConsentCodeAndIndividualActors1732402310000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE consent_provision ADD COLUMN actor_ref text, ADD COLUMN code_system text, ADD COLUMN code text`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE consent_provision DROP COLUMN actor_ref, DROP COLUMN code_system, DROP COLUMN code`);
  }
}
