import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The live-resource index carries the columns the access predicate reads (docs/search.md,
 * `_total=accurate`): custodian, compartments, security labels, clinical period and last update
 * (the clinical period's fallback). A count, a page or a join that judges each match's access can
 * then read the index alone (an index-only scan) instead of the table's row of every match, which
 * at 1M resources was most of a 141k-match count's second. It replaces `resource_live_idx` (the same
 * key and partial condition), so a write maintains as many indexes as before. The content column is
 * not included: only Binary rows' `securityContext` rule reads it.
 *
 * Built CONCURRENTLY (no transaction) so a live server keeps writing during the build; IF NOT EXISTS
 * so an operator may build it ahead of the migration on a large database.
 */
export class ResourceLiveAccessIndex1732402400600 implements MigrationInterface {
  name = 'ResourceLiveAccessIndex1732402400600';
  transaction = false;

  async up(q: QueryRunner): Promise<void> {
    await q.query(
      `CREATE INDEX CONCURRENTLY IF NOT EXISTS resource_live_access_idx ON resource (resource_type, id)
         INCLUDE (custodian_org, compartments, security_labels, clinical_period, last_updated) WHERE NOT deleted`,
    );
    await q.query(`DROP INDEX CONCURRENTLY IF EXISTS resource_live_idx`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`CREATE INDEX CONCURRENTLY IF NOT EXISTS resource_live_idx ON resource (resource_type, id) WHERE NOT deleted`);
    await q.query(`DROP INDEX CONCURRENTLY IF EXISTS resource_live_access_idx`);
  }
}
