import { Logger } from '@nestjs/common';
import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The custodian organization of each resource (docs/architecture.md, "Custodian and written-by"),
 * kept apart from `author_org`, which is the organization that wrote each version (written-by). The
 * custodian is set on create and changed only by `$transfer-custodian`; consent's "own data" and
 * the default write policy use it. `resource_history` carries the resource's custodian on every
 * version row, so a version is judged without a join (a transfer updates them together).
 *
 * Backfill: until now `resource.author_org` held the LAST writer, so the custodian is taken from
 * each resource's FIRST version in `resource_history`, not from the current row. How many current
 * rows differ (resources last written by another organization than the one that created them) is
 * logged: from now on those organizations lose the "own data" bypass and the write right they had
 * taken over by writing.
 */
export class ResourceCustodian1732402300000 implements MigrationInterface {
  name = 'ResourceCustodian1732402300000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE resource ADD COLUMN custodian_org text`);
    await q.query(`ALTER TABLE resource_history ADD COLUMN custodian_org text`);
    await q.query(`
      UPDATE resource r SET custodian_org = f.author_org
        FROM (SELECT DISTINCT ON (resource_type, id) resource_type, id, author_org
                FROM resource_history ORDER BY resource_type, id, version_id) f
       WHERE f.resource_type = r.resource_type AND f.id = r.id`);
    await q.query(`
      UPDATE resource_history h SET custodian_org = r.custodian_org
        FROM resource r
       WHERE r.resource_type = h.resource_type AND r.id = h.id AND r.custodian_org IS NOT NULL`);
    const [{ n }]: { n: string }[] = await q.query(`SELECT count(*) AS n FROM resource WHERE custodian_org IS DISTINCT FROM author_org`);
    new Logger('ResourceCustodian').log(`custodian backfilled from first versions; ${n} resource(s) were last written by another organization than their custodian`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE resource_history DROP COLUMN custodian_org`);
    await q.query(`ALTER TABLE resource DROP COLUMN custodian_org`);
  }
}
