import type { IndexRows } from './search-index.writer';
import { normalizeString } from './search-normalize';
import type { Clause, ParamClause, SearchRequestAst } from './search-request';
import { indexOfUnescaped, unescape } from './search-sql.compiler';

/** One clause the prefilter decides exactly: true when some index row of the resource satisfies it. */
type RowTest = (rows: IndexRows) => boolean;

/**
 * A search's clauses that can be decided exactly from one resource's own index rows (the rows
 * SearchIndexWriter stored for the version, which the SQL compiler's conditions are evaluated
 * on): token, reference and string parameters without a modifier other than string `:exact` /
 * `:contains`. Each test mirrors the compiler's condition for that clause (search-sql.compiler.ts,
 * `tokenCondition`, `referenceCondition`, string) row for row. Everything else (chains, `_has`,
 * dates, quantities, `_id`, `_lastUpdated`, full text, `:not`, `:in`, `:missing`, ...) is not
 * decided here. Used before SQL by rest-hook matching: `rejects` true means no row of the resource
 * can satisfy one AND-ed clause, so the search cannot match it under any access; false means
 * "maybe", and SQL under the subscriber's access stays the arbiter.
 */
export class CriteriaPrefilter {
  private constructor(
    private readonly tests: readonly RowTest[],
    private readonly clauses: number,
  ) {}

  /** The decidable clauses of `ast` for `resourceType` (a single-type search, as a Subscription's criteria). */
  static of(ast: SearchRequestAst, resourceType: string, fhirBaseUrl: string): CriteriaPrefilter {
    const tests: RowTest[] = [];
    const clauses = ast.clauses.get(resourceType) ?? [];
    for (const clause of clauses) {
      const test = clauseTest(clause, fhirBaseUrl);
      if (test) tests.push(test);
    }
    return new CriteriaPrefilter(tests, clauses.length);
  }

  /** How many AND-ed clauses it decides (0: every resource goes to SQL). */
  get decided(): number {
    return this.tests.length;
  }

  /**
   * Whether it decides every clause (at least one): then a resource it does not reject matches the
   * criteria, and only the subscriber's access remains to be checked (no criteria SQL). Criteria
   * read only the resource's own index rows then: no chain or `_has` into data the subscriber may
   * not read.
   */
  get decidesAll(): boolean {
    return this.clauses > 0 && this.tests.length === this.clauses;
  }

  /** True when the resource with these index rows cannot match (some decidable clause has no row). */
  rejects(rows: IndexRows): boolean {
    return this.tests.some((test) => !test(rows));
  }
}

function clauseTest(clause: Clause, fhirBaseUrl: string): RowTest | undefined {
  if (clause.kind !== 'param') return undefined;
  const { def } = clause;
  if (def.column || def.fullText || !clause.values.length) return undefined;
  // A value the compiler would refuse makes the whole criteria match nothing there: left to SQL.
  const alternatives: ((rows: IndexRows) => boolean)[] = [];
  for (const value of clause.values) {
    const alternative = valueTest(clause, value, fhirBaseUrl);
    if (!alternative) return undefined;
    alternatives.push(alternative);
  }
  return (rows) => alternatives.some((alternative) => alternative(rows));
}

function valueTest(c: ParamClause, value: string, fhirBaseUrl: string): RowTest | undefined {
  const param = c.def.code;
  switch (c.def.type) {
    case 'token': {
      if (c.modifier) return undefined;
      // tokenCondition: `code`, `|code` (no system), `system|`, `system|code`.
      const lower = c.def.caseInsensitiveCode === true;
      const codeOf = (raw: string): string => (lower ? unescape(raw).toLowerCase() : unescape(raw));
      const bar = indexOfUnescaped(value, '|');
      if (bar < 0) {
        const code = codeOf(value);
        return (rows) => rows.token.some(([p, , rowCode]) => p === param && rowCode === code);
      }
      const system = unescape(value.slice(0, bar));
      const code = codeOf(value.slice(bar + 1));
      if (!system) return (rows) => rows.token.some(([p, rowSystem, rowCode]) => p === param && rowSystem === null && rowCode === code);
      if (!code) return (rows) => rows.token.some(([p, rowSystem]) => p === param && rowSystem === system);
      return (rows) => rows.token.some(([p, rowSystem, rowCode]) => p === param && rowSystem === system && rowCode === code);
    }
    case 'reference': {
      if (c.modifier) return undefined;
      // referenceCondition: a local reference by type and id, an absolute or urn one by URL, a bare id by id.
      const v = unescape(value);
      const m = /^(?:(https?:\/\/.+)\/)?([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/.+)?$/.exec(v);
      if (m && (!m[1] || m[1] === fhirBaseUrl)) return (rows) => rows.reference.some(([p, type, id]) => p === param && type === m[2] && id === m[3]);
      if (/^https?:\/\//.test(v) || v.startsWith('urn:')) return (rows) => rows.reference.some(([p, , , url]) => p === param && url === v);
      if (!/^[A-Za-z0-9\-.]{1,64}$/.test(v)) return undefined;
      return (rows) => rows.reference.some(([p, , id]) => p === param && id === v);
    }
    case 'string': {
      // Prefix on the normalized value (LIKE 'v%'), `:exact` on the value as stored, `:contains` anywhere.
      const v = unescape(value);
      if (c.modifier === 'exact') return (rows) => rows.string.some(([p, , exact]) => p === param && exact === v);
      const norm = normalizeString(v);
      if (c.modifier === 'contains') return (rows) => rows.string.some(([p, rowNorm]) => p === param && rowNorm.includes(norm));
      if (c.modifier) return undefined;
      return (rows) => rows.string.some(([p, rowNorm]) => p === param && rowNorm.startsWith(norm));
    }
    default:
      return undefined;
  }
}
