import type { MigrationInterface, QueryRunner } from 'typeorm';

const STATISTICS: [name: string, table: string, columns: string][] = [
  ['search_token_param_code_stats', 'search_token', 'resource_type, param, system, code'],
  ['search_reference_param_target_stats', 'search_reference', 'resource_type, param, target_type'],
  ['search_date_param_stats', 'search_date', 'resource_type, param'],
  ['search_string_param_stats', 'search_string', 'resource_type, param'],
];

/**
 * Search indexes that carry the resource id (measured with `npm run bench:search`, see
 * docs/search.md):
 * - token and reference equality indexes end in `id`, so the matches of one value come out in id
 *   order: the default `ORDER BY r.id LIMIT n` reads n matches instead of sorting all of them, and
 *   the id check is an index-only probe;
 * - date and string-prefix indexes include `id` (and the other bound of the date range), so the
 *   filter is an index-only scan;
 * - a partial index of live resources by (type, id) lets joins and `_total` counts check "not
 *   deleted" without reading the table.
 * Replaced indexes are dropped, so a write maintains as many indexes as before (plus the partial
 * one). Extended statistics tell the planner that the parameter decides the values. Built
 * CONCURRENTLY (no transaction) so a live server keeps writing during the build.
 */
export class SearchCoveringIndexes1732400000600 implements MigrationInterface {
  name = 'SearchCoveringIndexes1732400000600';
  transaction = false;

  async up(q: QueryRunner): Promise<void> {
    const build = [
      `search_token_code_id_idx ON search_token (resource_type, param, code, id) INCLUDE (system)`,
      `search_reference_target_id_idx ON search_reference (resource_type, param, target_id, target_type, id)`,
      `search_date_low_id_idx ON search_date (resource_type, param, low) INCLUDE (high, id)`,
      `search_date_high_id_idx ON search_date (resource_type, param, high) INCLUDE (low, id)`,
      // Per resource: replacing its rows, and `_sort` keys (min(low)/max(high) of one parameter) index-only.
      `search_date_resource_param_idx ON search_date (resource_type, id, param) INCLUDE (low, high)`,
      // Per resource: replacing its rows, and `_include` / `_has` (a source's targets) index-only.
      `search_reference_resource_param_idx ON search_reference (resource_type, id, param) INCLUDE (target_type, target_id)`,
      `search_string_prefix_id_idx ON search_string (resource_type, param, norm text_pattern_ops) INCLUDE (id)`,
      `resource_live_idx ON resource (resource_type, id) WHERE NOT deleted`,
    ];
    // IF NOT EXISTS: an operator may build these ahead of the migration on a large live database.
    for (const index of build) await q.query(`CREATE INDEX CONCURRENTLY IF NOT EXISTS ${index}`);
    for (const old of ['search_token_code_idx', 'search_reference_target_idx', 'search_date_low_idx', 'search_date_high_idx', 'search_date_resource_idx', 'search_reference_resource_idx', 'search_string_prefix_idx']) {
      await q.query(`DROP INDEX CONCURRENTLY IF EXISTS ${old}`);
    }
    // The parameter decides the type and the values (a code of `code` is not one of `status`):
    // without these the planner multiplies the columns' selectivities and underestimates a common
    // code tenfold, and picks nested loops where a merge join is right.
    for (const [name, table, columns] of STATISTICS) {
      await q.query(`CREATE STATISTICS IF NOT EXISTS ${name} (ndistinct, dependencies, mcv) ON ${columns} FROM ${table}`);
      await q.query(`ANALYZE ${table}`);
    }
  }

  async down(q: QueryRunner): Promise<void> {
    for (const [name] of STATISTICS) await q.query(`DROP STATISTICS IF EXISTS ${name}`);
    await q.query(`CREATE INDEX CONCURRENTLY IF NOT EXISTS search_token_code_idx ON search_token (resource_type, param, code, system)`);
    await q.query(`CREATE INDEX CONCURRENTLY IF NOT EXISTS search_reference_target_idx ON search_reference (resource_type, param, target_id, target_type)`);
    await q.query(`CREATE INDEX CONCURRENTLY IF NOT EXISTS search_date_low_idx ON search_date (resource_type, param, low)`);
    await q.query(`CREATE INDEX CONCURRENTLY IF NOT EXISTS search_date_high_idx ON search_date (resource_type, param, high)`);
    await q.query(`CREATE INDEX CONCURRENTLY IF NOT EXISTS search_string_prefix_idx ON search_string (resource_type, param, norm text_pattern_ops)`);
    await q.query(`CREATE INDEX CONCURRENTLY IF NOT EXISTS search_date_resource_idx ON search_date (resource_type, id)`);
    await q.query(`CREATE INDEX CONCURRENTLY IF NOT EXISTS search_reference_resource_idx ON search_reference (resource_type, id)`);
    for (const index of ['search_token_code_id_idx', 'search_reference_target_id_idx', 'search_date_low_id_idx', 'search_date_high_id_idx', 'search_date_resource_param_idx', 'search_reference_resource_param_idx', 'search_string_prefix_id_idx', 'resource_live_idx']) {
      await q.query(`DROP INDEX CONCURRENTLY IF EXISTS ${index}`);
    }
  }
}
