import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Current-version table keyed by (type, id) and an append-only history with every version.
 * `seq` gives history a total order for keyset paging at type and system level.
 */
export class ResourceStorage1732400000000 implements MigrationInterface {
  name = 'ResourceStorage1732400000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE resource (
        resource_type   text        NOT NULL,
        id              text        NOT NULL,
        version_id      integer     NOT NULL,
        last_updated    timestamptz NOT NULL,
        deleted         boolean     NOT NULL DEFAULT false,
        author_org      text,
        compartments    text[]      NOT NULL DEFAULT '{}',
        security_labels text[]      NOT NULL DEFAULT '{}',
        content         jsonb,
        PRIMARY KEY (resource_type, id)
      )`);
    await q.query(`CREATE INDEX resource_type_last_updated_idx ON resource (resource_type, last_updated, id)`);
    await q.query(`CREATE INDEX resource_compartments_idx ON resource USING gin (compartments)`);
    await q.query(`
      CREATE TABLE resource_history (
        seq             bigserial   NOT NULL,
        resource_type   text        NOT NULL,
        id              text        NOT NULL,
        version_id      integer     NOT NULL,
        last_updated    timestamptz NOT NULL,
        deleted         boolean     NOT NULL DEFAULT false,
        method          text        NOT NULL,
        author_org      text,
        content         jsonb,
        PRIMARY KEY (resource_type, id, version_id)
      )`);
    await q.query(`CREATE UNIQUE INDEX resource_history_seq_idx ON resource_history (seq)`);
    await q.query(`CREATE INDEX resource_history_type_seq_idx ON resource_history (resource_type, seq)`);
    await q.query(`CREATE INDEX resource_history_last_updated_idx ON resource_history (last_updated)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE resource_history`);
    await q.query(`DROP TABLE resource`);
  }
}
