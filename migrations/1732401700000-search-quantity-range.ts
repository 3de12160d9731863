import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Range values (Range, e.g. RiskAssessment.prediction.probabilityRange, Condition.onsetRange) in
 * the number/quantity index: a Range row has no `value` and its bounds in `low`/`high` (an open
 * bound is -Infinity/Infinity). Plain values keep `value` and their index unchanged; the partial
 * index serves only the range rows. Existing rows are all plain values (Ranges were not indexed
 * before), so nothing is backfilled here: `npm run reindex` adds the range rows of resources
 * stored earlier (docs/search.md).
 */
export class SearchQuantityRange1732401700000 implements MigrationInterface {
  name = 'SearchQuantityRange1732401700000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE search_quantity ALTER COLUMN value DROP NOT NULL, ADD COLUMN low numeric, ADD COLUMN high numeric`);
    await q.query(
      `ALTER TABLE search_quantity ADD CONSTRAINT search_quantity_value_or_range CHECK ((value IS NOT NULL AND low IS NULL AND high IS NULL) OR (value IS NULL AND low IS NOT NULL AND high IS NOT NULL))`,
    );
    await q.query(`CREATE INDEX search_quantity_range_idx ON search_quantity (resource_type, param, low, high) INCLUDE (id) WHERE value IS NULL`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX search_quantity_range_idx`);
    await q.query(`DELETE FROM search_quantity WHERE value IS NULL`);
    await q.query(`ALTER TABLE search_quantity DROP CONSTRAINT search_quantity_value_or_range, DROP COLUMN low, DROP COLUMN high, ALTER COLUMN value SET NOT NULL`);
  }
}
