/**
 * SQL condition: the row (resource type and id expressions at some alias) has a token index row of
 * `param` with this code and, unless `system` is NULL, this system. One probe of
 * search_token_code_id_idx (resource_type, param, code, id). Used by the consent predicate for
 * provision.code (docs/consent.md); the index holds the current version's values only.
 */
export function tokenIndexHolds(row: { resourceType: string; id: string }, param: string, system: string, code: string, alias = 'cns_t'): string {
  return `EXISTS (SELECT 1 FROM search_token ${alias}
            WHERE ${alias}.resource_type = ${row.resourceType} AND ${alias}.param = ${param} AND ${alias}.code = ${code} AND ${alias}.id = ${row.id}
              AND (${system} IS NULL OR ${alias}.system = ${system}))`;
}
