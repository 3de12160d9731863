import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Composite search parameters (search.html#composite): one row per combination of component values
 * taken from the same value of the composite's expression (e.g. one Observation.component), so
 * components stay paired. Each component occupies one slot of generic typed columns: token
 * (system, code), quantity (number, system, code), number, date (low, high), string (normalized in
 * code), reference (`Type/id` or URL in code), uri (code). Indexes lead with the parameter and the
 * first component's code, which every composite query gives.
 */
export class SearchComposite1732400000300 implements MigrationInterface {
  name = 'SearchComposite1732400000300';

  async up(q: QueryRunner): Promise<void> {
    const slot = (n: number) => `c${n}_system text, c${n}_code text, c${n}_number numeric, c${n}_low timestamptz, c${n}_high timestamptz`;
    await q.query(`
      CREATE TABLE search_composite (
        resource_type text NOT NULL, id text NOT NULL, param text NOT NULL,
        ${slot(1)}, ${slot(2)}, ${slot(3)}
      )`);
    await q.query(`CREATE INDEX search_composite_code_idx ON search_composite (resource_type, param, c1_code, c2_code)`);
    await q.query(`CREATE INDEX search_composite_number_idx ON search_composite (resource_type, param, c1_code, c2_number)`);
    await q.query(`CREATE INDEX search_composite_date_idx ON search_composite (resource_type, param, c1_code, c2_low)`);
    await q.query(`CREATE INDEX search_composite_resource_idx ON search_composite (resource_type, id)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE search_composite`);
  }
}
