import type { EntityManager } from 'typeorm';
import { FhirError } from '../../common/fhir-error';
import type { AccessContext } from '../pipeline/access-context';
import { SearchRequestAst, SortKey } from './search-request';
import { sortKeyColumn } from './search-sort-key';
import { SearchSqlCompiler } from './search-sql.compiler';

/*
 * Sort by one search parameter as an index walk (docs/search.md, "Sorting"): the page is read from
 * the parameter's index table in sort order, joined to `resource` for the other clauses and the
 * access predicate, and stops after n+1 rows — instead of computing the sort key of every match
 * and sorting them all. A resource's key is its lowest value ascending (`min(low)` for dates) and
 * its highest descending (`max(high)`); walking the index in that order, a resource's rows that do
 * not carry its key are skipped by an index-only probe, and DISTINCT folds equal (key, id) rows.
 * Resources without a value come after all others, in id order (a second statement, reached only
 * at the end of the walk). The key's column per parameter type is in search-sort-key.ts.
 */

/** One sort key on an indexed search parameter over one resource type: the shape the walk serves. */
export function isWalkable(ast: SearchRequestAst): boolean {
  return ast.sort.length === 1 && ast.resourceTypes.length === 1 && sortKeyColumn(ast.sort[0]) !== undefined;
}

const CURSOR_VALUE: Record<string, RegExp> = {
  timestamptz: /^(-?infinity|\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d(:\d\d)?|Z)?)$/,
  numeric: /^(-?\d+(\.\d+)?([eE][+-]?\d+)?|-?Infinity|NaN)$/,
};

/** A cursor's key must parse as the key's type: a tampered one is a 400, never a failed cast (500). */
export function assertCursorValue(cast: string, value: string | null): void {
  if (value !== null && CURSOR_VALUE[cast] && !CURSOR_VALUE[cast].test(value)) {
    throw FhirError.badRequest('_cursor does not belong to this search', ['_cursor']);
  }
}

export interface WalkRow {
  resource_type: string;
  id: string;
  /** The sort key as text (cursor value); null for a resource without a value. */
  o0: string | null;
}

/**
 * Index rows a walk examines before it gives up on a page: beyond it the matches are sparse in sort
 * order (a selective search, e.g. one patient's Observations) and the caller sorts the matches
 * instead (same order, same cursor). Bounds the walk's cost at a few milliseconds.
 */
export const WALK_BUDGET = 2000;

/**
 * Up to `limit` rows of the page in traversal order (reversed for a `previous` cursor). The order is
 * the walk (key in sort direction, then id) followed by the resources without a value (by id).
 * Undefined when the walk spent its budget before filling the page: the caller sorts the matches.
 */
export async function walkSortedPage(
  ctx: AccessContext,
  fhirBaseUrl: string,
  ast: SearchRequestAst,
  limit: number,
  runner: EntityManager,
): Promise<WalkRow[] | undefined> {
  const key = ast.sort[0];
  const backwards = ast.cursor?.direction === 'prev';
  if (ast.cursor && ast.cursor.values.length !== 1) throw FhirError.badRequest('_cursor does not belong to this search', ['_cursor']);
  const cursor = ast.cursor ? { key: ast.cursor.values[0] ?? null, id: ast.cursor.id } : undefined;
  if (cursor) assertCursorValue(sortKeyColumn(key)!.cast, cursor.key);
  const inMissing = cursor !== undefined && cursor.key === null;
  // Phases in traversal order: forward = walk then missing; backward = missing then walk, each reversed.
  const phases: ('walk' | 'missing')[] = backwards ? (inMissing ? ['missing', 'walk'] : ['walk']) : inMissing ? ['missing'] : ['walk', 'missing'];
  const rows: WalkRow[] = [];
  for (const phase of phases) {
    const want = limit - rows.length;
    if (want <= 0) break;
    // The cursor bounds only the phase it points into; a later phase starts at its beginning.
    const bound = cursor && (phase === 'missing') === inMissing ? cursor : undefined;
    const compiler = new SearchSqlCompiler(ctx, fhirBaseUrl);
    const sql = phase === 'walk' ? walkSql(compiler, ast, key, backwards, bound, want) : missingSql(compiler, ast, key, backwards, bound, want);
    const found = (await runner.query(sql, compiler.params.values)) as WalkRow[];
    if (phase === 'walk' && found.length < want) {
      // A short walk is the end of the index only if the budget was not spent: otherwise the matches
      // are sparse in sort order (a selective search) and collecting them first is the better plan.
      const counter = new SearchSqlCompiler(ctx, fhirBaseUrl);
      const [{ n }] = await runner.query(budgetSql(counter, ast, key, backwards, bound), counter.params.values);
      if (n > WALK_BUDGET) return undefined;
    }
    rows.push(...found);
  }
  return rows;
}

function walkSql(
  compiler: SearchSqlCompiler,
  ast: SearchRequestAst,
  key: SortKey,
  backwards: boolean,
  cursor: { key: string | null; id: string } | undefined,
  limit: number,
): string {
  const p = compiler.params;
  const k = sortKeyColumn(key)!;
  const where = compiler.where(ast);
  const param = p.bind(key.def.code);
  const col = `w.${k.column}`;
  // Traversal direction of the key: the sort direction, reversed when paging backwards; id likewise.
  const keyDesc = key.descending !== backwards;
  const order = (keyExpr: string, idExpr: string): string => `${keyExpr} ${keyDesc ? 'DESC' : 'ASC'}, ${idExpr} ${backwards ? 'DESC' : 'ASC'}`;
  let after = '';
  if (cursor?.key != null) {
    const c = `${p.bind(cursor.key)}::${k.cast}`;
    // `key <= c` (or >=) is the index condition that starts the walk at the cursor.
    after = ` AND ${col} ${keyDesc ? '<=' : '>='} ${c} AND (${col} ${keyDesc ? '<' : '>'} ${c} OR w.id ${backwards ? '<' : '>'} ${p.bind(cursor.id)})`;
  }
  // The candidates: index rows in sort order, at most WALK_BUDGET of them (a LIMITed sub-query, so
  // PostgreSQL cannot turn it into "all matches, then sort"). Each is checked by sub-plans that are
  // not pulled up (OFFSET 0): it carries the resource's key, and the resource matches the search
  // and the access predicate. The outer LIMIT stops the walk after the page.
  return `SELECT d.resource_type, d.id, d.k::text AS o0 FROM (
    SELECT DISTINCT c.resource_type, c.id, c.k FROM (
      SELECT w.resource_type, w.id, ${col} AS k FROM ${k.table} w
       WHERE w.resource_type = ${p.bind(ast.resourceTypes[0])} AND w.param = ${param}${after}
       ORDER BY ${order(col, 'w.id')} LIMIT ${p.bind(WALK_BUDGET)}) c
     WHERE c.k = (SELECT ${k.aggregate}(v.${k.column}) FROM ${k.table} v WHERE v.resource_type = c.resource_type AND v.id = c.id AND v.param = ${param})
       AND EXISTS (SELECT 1 FROM resource r WHERE r.resource_type = c.resource_type AND r.id = c.id AND ${where} OFFSET 0)
     ORDER BY ${order('c.k', 'c.id')} LIMIT ${p.bind(limit)}) d
    ORDER BY ${order('d.k', 'd.id')}`;
}

/** Whether the walk from this cursor has more than WALK_BUDGET candidates (so a short walk is not the end). */
function budgetSql(compiler: SearchSqlCompiler, ast: SearchRequestAst, key: SortKey, backwards: boolean, cursor: { key: string | null; id: string } | undefined): string {
  const p = compiler.params;
  const k = sortKeyColumn(key)!;
  const col = `w.${k.column}`;
  const keyDesc = key.descending !== backwards;
  let after = '';
  if (cursor?.key != null) {
    const c = `${p.bind(cursor.key)}::${k.cast}`;
    after = ` AND ${col} ${keyDesc ? '<=' : '>='} ${c} AND (${col} ${keyDesc ? '<' : '>'} ${c} OR w.id ${backwards ? '<' : '>'} ${p.bind(cursor.id)})`;
  }
  return `SELECT count(*)::int AS n FROM (SELECT 1 FROM ${k.table} w WHERE w.resource_type = ${p.bind(ast.resourceTypes[0])} AND w.param = ${p.bind(key.def.code)}${after} LIMIT ${p.bind(WALK_BUDGET + 1)}) c`;
}

function missingSql(
  compiler: SearchSqlCompiler,
  ast: SearchRequestAst,
  key: SortKey,
  backwards: boolean,
  cursor: { key: string | null; id: string } | undefined,
  limit: number,
): string {
  const p = compiler.params;
  const k = sortKeyColumn(key)!;
  const where = compiler.where(ast);
  const after = cursor ? ` AND r.id ${backwards ? '<' : '>'} ${p.bind(cursor.id)}` : '';
  return `SELECT r.resource_type, r.id, NULL::text AS o0 FROM resource r
    WHERE ${where}
      AND NOT EXISTS (SELECT 1 FROM ${k.table} v WHERE v.resource_type = r.resource_type AND v.id = r.id AND v.param = ${p.bind(key.def.code)})${after}
    ORDER BY r.id ${backwards ? 'DESC' : 'ASC'} LIMIT ${p.bind(limit)}`;
}

/** One type, no `_sort`, and a chain, untyped chain or `_has` clause: the shape the id walk serves. */
export function isIdWalkable(ast: SearchRequestAst): boolean {
  if (ast.sort.length !== 0 || ast.resourceTypes.length !== 1) return false;
  return (ast.clauses.get(ast.resourceTypes[0]) ?? []).some((c) => c.kind === 'chain' || c.kind === 'has' || c.kind === 'untyped-chain');
}

/**
 * A chain or `_has` whose inner sub-search (the chain's targets, the `_has`'s sources) has at most
 * this many rows is selective: its matches are few and are collected, without a walk. Probing a
 * prefix of the walk does not tell (ids cluster by patient: the first 200 Observations by id hold
 * no match of a chain that matches 8% of them), the inner set's size does: 1 Patient for
 * `subject:Patient.identifier=…` (34 matches), 2,219 for `subject:Patient.name=Kowalski` (60k).
 */
export const ID_WALK_SELECTIVE = 20;

/**
 * The default order (by id) of a search with a chain or `_has` clause, walked the same way: the
 * type's live rows in id order (`resource_live_access_idx`), at most WALK_BUDGET of them, each checked by
 * a sub-plan that is not pulled up (the clauses and the access predicate as probes of that one
 * row), stopping after the page. Left to itself PostgreSQL estimates such a sub-search at a few
 * rows and collects every match before the first page (a broad chain: all its 60k matches at 1M,
 * docs/search.md). Undefined (the caller collects the matches) when a clause is selective
 * (ID_WALK_SELECTIVE) or the matches are too sparse in id order for the budget.
 */
export async function walkIdPage(ctx: AccessContext, fhirBaseUrl: string, ast: SearchRequestAst, limit: number, runner: EntityManager): Promise<WalkRow[] | undefined> {
  const backwards = ast.cursor?.direction === 'prev';
  if (ast.cursor && ast.cursor.values.length !== 0) throw FhirError.badRequest('_cursor does not belong to this search', ['_cursor']);
  // Every clause must hold, so one selective chain or _has makes the whole search selective.
  for (const clause of ast.clauses.get(ast.resourceTypes[0]) ?? []) {
    const inner = clause.kind === 'chain' || clause.kind === 'has' ? [clause] : clause.kind === 'untyped-chain' ? clause.chains : [];
    if (!inner.length) continue;
    const counter = new SearchSqlCompiler(ctx, fhirBaseUrl);
    const cap = counter.params.bind(ID_WALK_SELECTIVE + 1);
    const [{ n }] = await runner.query(
      `SELECT (${inner.map((c) => `(SELECT count(*) FROM (${counter.innerIds(c)} LIMIT ${cap}) s)`).join(' + ')})::int AS n`,
      counter.params.values,
    );
    if (n <= ID_WALK_SELECTIVE) return undefined;
  }
  const dir = backwards ? 'DESC' : 'ASC';
  const candidates = (c: SearchSqlCompiler, n: number): string =>
    `SELECT w.resource_type, w.id FROM resource w
      WHERE w.resource_type = ${c.params.bind(ast.resourceTypes[0])} AND NOT w.deleted${ast.cursor ? ` AND w.id ${backwards ? '<' : '>'} ${c.params.bind(ast.cursor.id)}` : ''}
      ORDER BY w.id ${dir} LIMIT ${c.params.bind(n)}`;
  const compiler = new SearchSqlCompiler(ctx, fhirBaseUrl);
  const where = compiler.where(ast);
  const found = (await runner.query(
    `SELECT c.resource_type, c.id, NULL::text AS o0 FROM (${candidates(compiler, WALK_BUDGET)}) c
      WHERE EXISTS (SELECT 1 FROM resource r WHERE r.resource_type = c.resource_type AND r.id = c.id AND ${where} OFFSET 0)
      ORDER BY c.id ${dir} LIMIT ${compiler.params.bind(limit)}`,
    compiler.params.values,
  )) as WalkRow[];
  if (found.length < limit) {
    // Short: the end of the type's rows, or the budget spent on sparse matches (then collect them).
    const counter = new SearchSqlCompiler(ctx, fhirBaseUrl);
    const [{ n }] = await runner.query(`SELECT count(*)::int AS n FROM (${candidates(counter, WALK_BUDGET + 1)}) c`, counter.params.values);
    if (n > WALK_BUDGET) return undefined;
  }
  return found;
}
