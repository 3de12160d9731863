/**
 * The typed access predicate (GUIDE §1): a list of fragments, each with the basis that put it there
 * and a function that renders SQL for whichever row alias the compiler is at (root, chain, `_has`,
 * include, history row, write lock). Values enter SQL only through the binder of the statement being
 * built, so no fragment is ever renumbered or re-aliased.
 */

/** Why a fragment restricts access: recorded in audit so a decision can be explained. */
export type AccessBasis = 'scope' | 'consent' | 'policy' | 'system';

/** Binds a value into the statement being built and answers its placeholder (`$n`). */
export interface SqlBinder {
  bind(value: unknown): string;
}

/**
 * The columns a fragment may use on the row at `alias`: `resource_type`, `id`, `compartments`,
 * `security_labels`, `custodian_org` (the custodian organization), `author_org` (written-by).
 * Both `resource` (current versions) and `resource_history` (every version, with that version's
 * own attributes and the resource's custodian) have them, so one fragment serves both.
 */
export type AccessRow = 'current' | 'version';

export interface AccessFragment {
  readonly basis: AccessBasis;
  /** Short description for audit and explanations (never PHI): e.g. `scope system/Observation.rs?category=…`. */
  readonly description: string;
  /**
   * Rows of which kind the fragment can judge. A fragment that consults the search index tables
   * (scope queries) judges current versions only; the pipeline never lets such a principal read history.
   */
  readonly rows?: readonly AccessRow[];
  render(alias: string, bind: SqlBinder, row: AccessRow): string;
}

const ALIAS_RE = /^[a-z][a-z0-9_]{0,30}$/;

/** `(f1) AND (f2) …` for the row at `alias`; `TRUE` for no fragments. */
export function renderFragments(fragments: readonly AccessFragment[], alias: string, bind: SqlBinder, row: AccessRow = 'current'): string {
  if (!ALIAS_RE.test(alias)) throw new Error(`Invalid SQL alias '${alias}'`);
  if (!fragments.length) return 'TRUE';
  return fragments
    .map((f) => {
      if (f.rows && !f.rows.includes(row)) throw new Error(`Access fragment '${f.description}' cannot judge ${row} rows`);
      return `(${f.render(alias, bind, row)})`;
    })
    .join(' AND ');
}

/** A fragment that admits nothing: the safe default where no rule grants access. */
export function denyAll(basis: AccessBasis, description: string): AccessFragment {
  return { basis, description, render: () => 'FALSE' };
}
