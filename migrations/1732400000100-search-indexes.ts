import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Typed search index tables, one per search-parameter type (GUIDE §2, HAPI-style): rows are
 * extracted on write by evaluating each SearchParameter's FHIRPath expression. Every index leads
 * with (resource_type, param) so a filter is an index range scan; a second index on
 * (resource_type, id) serves replacing a resource's rows.
 */
export class SearchIndexes1732400000100 implements MigrationInterface {
  name = 'SearchIndexes1732400000100';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE EXTENSION IF NOT EXISTS pg_trgm`);
    await q.query(`
      CREATE TABLE search_token (
        resource_type text NOT NULL, id text NOT NULL, param text NOT NULL,
        system text, code text, display text
      )`);
    await q.query(`CREATE INDEX search_token_code_idx ON search_token (resource_type, param, code, system)`);
    await q.query(`CREATE INDEX search_token_system_idx ON search_token (resource_type, param, system)`);
    await q.query(`CREATE INDEX search_token_resource_idx ON search_token (resource_type, id)`);

    await q.query(`
      CREATE TABLE search_string (
        resource_type text NOT NULL, id text NOT NULL, param text NOT NULL,
        norm text NOT NULL, exact text NOT NULL
      )`);
    await q.query(`CREATE INDEX search_string_prefix_idx ON search_string (resource_type, param, norm text_pattern_ops)`);
    await q.query(`CREATE INDEX search_string_exact_idx ON search_string (resource_type, param, exact)`);
    await q.query(`CREATE INDEX search_string_trgm_idx ON search_string USING gin (norm gin_trgm_ops)`);
    await q.query(`CREATE INDEX search_string_resource_idx ON search_string (resource_type, id)`);

    await q.query(`
      CREATE TABLE search_date (
        resource_type text NOT NULL, id text NOT NULL, param text NOT NULL,
        low timestamptz NOT NULL, high timestamptz NOT NULL
      )`);
    await q.query(`CREATE INDEX search_date_low_idx ON search_date (resource_type, param, low)`);
    await q.query(`CREATE INDEX search_date_high_idx ON search_date (resource_type, param, high)`);
    await q.query(`CREATE INDEX search_date_resource_idx ON search_date (resource_type, id)`);

    await q.query(`
      CREATE TABLE search_quantity (
        resource_type text NOT NULL, id text NOT NULL, param text NOT NULL,
        value numeric NOT NULL, system text, code text
      )`);
    await q.query(`CREATE INDEX search_quantity_value_idx ON search_quantity (resource_type, param, value)`);
    await q.query(`CREATE INDEX search_quantity_resource_idx ON search_quantity (resource_type, id)`);

    await q.query(`
      CREATE TABLE search_reference (
        resource_type text NOT NULL, id text NOT NULL, param text NOT NULL,
        target_type text, target_id text, url text
      )`);
    await q.query(`CREATE INDEX search_reference_target_idx ON search_reference (resource_type, param, target_id, target_type)`);
    await q.query(`CREATE INDEX search_reference_reverse_idx ON search_reference (target_type, target_id, resource_type, param)`);
    await q.query(`CREATE INDEX search_reference_resource_idx ON search_reference (resource_type, id)`);

    await q.query(`
      CREATE TABLE search_uri (
        resource_type text NOT NULL, id text NOT NULL, param text NOT NULL, uri text NOT NULL
      )`);
    await q.query(`CREATE INDEX search_uri_idx ON search_uri (resource_type, param, uri text_pattern_ops)`);
    await q.query(`CREATE INDEX search_uri_resource_idx ON search_uri (resource_type, id)`);
  }

  async down(q: QueryRunner): Promise<void> {
    for (const t of ['search_uri', 'search_reference', 'search_quantity', 'search_date', 'search_string', 'search_token']) {
      await q.query(`DROP TABLE ${t}`);
    }
  }
}
