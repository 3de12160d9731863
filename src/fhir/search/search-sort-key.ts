import type { SortKey } from './search-request';

/**
 * The index column a sort key is read from, per parameter type: a resource's key is its lowest value
 * ascending (`min(low)` for dates) and its highest descending (`max(high)`). Shared by the sort walk
 * (search-sort-walk.ts) and the compiler's general sort, below both so neither imports the other.
 */
const WALK: Record<string, { table: string; asc: string; desc: string; cast: string }> = {
  date: { table: 'search_date', asc: 'low', desc: 'high', cast: 'timestamptz' },
  number: { table: 'search_quantity', asc: 'value', desc: 'value', cast: 'numeric' },
  quantity: { table: 'search_quantity', asc: 'value', desc: 'value', cast: 'numeric' },
  string: { table: 'search_string', asc: 'norm', desc: 'norm', cast: 'text' },
  token: { table: 'search_token', asc: 'code', desc: 'code', cast: 'text' },
  reference: { table: 'search_reference', asc: 'target_id', desc: 'target_id', cast: 'text' },
  uri: { table: 'search_uri', asc: 'uri', desc: 'uri', cast: 'text' },
};

/** The sort key's column and aggregate for a parameter type and direction (the walk and the compiler's general path). */
export function sortKeyColumn(key: SortKey): { table: string; column: string; aggregate: 'min' | 'max'; cast: string } | undefined {
  const w = WALK[key.def.type];
  if (!w || key.def.column) return undefined;
  return { table: w.table, column: key.descending ? w.desc : w.asc, aggregate: key.descending ? 'max' : 'min', cast: w.cast };
}
