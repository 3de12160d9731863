import { FhirError } from '../../common/fhir-error';
import { instantText, parseFhirDateRange } from '../../common/fhir-date';
import type { AccessContext } from '../pipeline/access-context';
import { SqlParams } from '../storage/sql-params';
import { DEFAULT_TEXT_LANGUAGE, SearchParamDef } from './search-parameter.registry';
import { normalizeString } from './search-normalize';
import { splitComposite } from './search-composite';
import { sortKeyColumn } from './search-sort-key';
import { ChainClause, Clause, HasClause, ParamClause, SearchRequestAst, splitPrefix } from './search-request';

export { SqlParams };

const TABLE: Record<string, string> = {
  token: 'search_token',
  string: 'search_string',
  date: 'search_date',
  number: 'search_quantity',
  quantity: 'search_quantity',
  reference: 'search_reference',
  uri: 'search_uri',
  composite: 'search_composite',
};

/**
 * Compiles the search AST to SQL over `resource` and the index tables. Each clause becomes an
 * `alias.id IN (SELECT … FROM search_x …)` semi-join served by the (resource_type, param, value)
 * indexes; the AccessContext predicate is AND-ed at the root and in every chained or reverse-
 * chained sub-search, so consent also bounds what chains and `_has` can see.
 */
export class SearchSqlCompiler {
  private aliasCounter = 0;

  constructor(
    /** Access for chained and `_has` sub-searches; absent only where clauses cannot chain (scope queries). */
    private readonly ctx: AccessContext | undefined,
    /** References written as absolute URLs of this server are local references. */
    private readonly fhirBaseUrl: string,
    readonly params: SqlParams = new SqlParams(),
    /** SEARCH_TEXT_LANGUAGE: `_text` / `_content` queries use the configuration their rows were written with. */
    private readonly textLanguage: string = DEFAULT_TEXT_LANGUAGE,
  ) {}

  /** The WHERE condition over alias `r` for the whole request (types, compartment, clauses, access). */
  where(ast: SearchRequestAst): string {
    const { types, access, compartment } = this.parts(ast);
    return [types, 'NOT r.deleted', access, ...compartment].join(' AND ');
  }

  /**
   * The same condition in two parts: what the request matches (types, clauses, not deleted,
   * compartment) and the access predicate over `r`. A count uses them apart (`_total=accurate`:
   * `count(*) FILTER (WHERE access)`), so the predicate is judged on the matches only, after the
   * join, and the join can be a merge of two index-only scans (docs/search.md).
   */
  matchesAndAccess(ast: SearchRequestAst): { matches: string; access: string } {
    const { types, access, compartment } = this.parts(ast);
    return { matches: [types, 'NOT r.deleted', ...compartment].join(' AND '), access };
  }

  /** Bound in this order (types, access, compartment) whichever way they are joined. */
  private parts(ast: SearchRequestAst): { types: string; access: string; compartment: string[] } {
    const perType = ast.resourceTypes.map((type) => {
      const parts = [`r.resource_type = ${this.params.bind(type)}`];
      for (const clause of ast.clauses.get(type) ?? []) parts.push(this.clause(clause, 'r'));
      return `(${parts.join(' AND ')})`;
    });
    const types = perType.length === 1 ? perType[0] : `(${perType.join(' OR ')})`;
    const access = this.access('r');
    return { types, access, compartment: ast.compartment ? [this.compartment(ast.compartment)] : [] };
  }

  /**
   * A compartment bound. A Patient's compartment holds the person's linked records too: the other
   * Patients joined to it by Person links alone (`patient_link.via_person`: MPI-certain or
   * admin-confirmed, docs/identity.md, Linked records), never by a hospital's own Patient.link.
   * Their rows still pass the access predicate (consent) like any other. One uncorrelated
   * sub-select (an InitPlan, evaluated once) keeps the bound an index condition for the GIN index.
   */
  private compartment({ type, id }: { type: string; id: string }): string {
    const p = this.params.bind(id);
    if (type !== 'Patient') return `r.compartments @> ARRAY[${p}]::text[]`;
    return `r.compartments && (ARRAY[${p}]::text[] || ARRAY(SELECT cl.linked_id FROM patient_link cl WHERE cl.patient_id = ${p} AND cl.via_person))`;
  }

  /**
   * The clauses of `type` over alias `r`, without the type, deleted and access conditions: for a
   * row already selected under its access (rest-hook matching tests many criteria on one row).
   */
  clauses(ast: SearchRequestAst, type: string): string {
    const parts = (ast.clauses.get(type) ?? []).map((clause) => this.clause(clause, 'r'));
    return parts.length ? parts.join(' AND ') : 'TRUE';
  }

  /** The AccessContext predicate rendered for the row at `alias`, bound into this statement. */
  access(alias: string): string {
    if (!this.ctx) throw new Error('Chained and _has clauses need an access context');
    return `(${this.ctx.renderRead(alias, this.params)})`;
  }

  clause(clause: Clause, alias: string): string {
    switch (clause.kind) {
      case 'chain':
        return this.chain(clause, alias);
      case 'has':
        return this.has(clause, alias);
      case 'untyped-chain':
        // Each target type's sub-search carries the access predicate, as a typed chain's does.
        return `(${clause.chains.map((c) => this.chain(c, alias)).join(' OR ')})`;
      default:
        return this.param(clause, alias);
    }
  }

  private nextAlias(prefix: string): string {
    return `${prefix}${++this.aliasCounter}`;
  }

  private chain(c: ChainClause, alias: string): string {
    const x = this.nextAlias('x');
    return `${alias}.id IN (SELECT ${x}.id FROM search_reference ${x}
      WHERE ${x}.resource_type = ${this.params.bind(c.resourceType)} AND ${x}.param = ${this.params.bind(c.def.code)}
        AND ${x}.target_type = ${this.params.bind(c.targetType)}
        AND ${x}.target_id IN (${this.subSearch(c.targetType, c.inner)}))`;
  }

  private has(c: HasClause, alias: string): string {
    const x = this.nextAlias('x');
    return `${alias}.id IN (SELECT ${x}.target_id FROM search_reference ${x}
      WHERE ${x}.resource_type = ${this.params.bind(c.sourceType)} AND ${x}.param = ${this.params.bind(c.referenceParam)}
        AND ${x}.target_type = ${this.params.bind(c.resourceType)}
        AND ${x}.id IN (${this.subSearch(c.sourceType, c.inner)}))`;
  }

  /** The ids a chain's targets or a `_has`'s sources are (its inner sub-search, access included). */
  innerIds(clause: ChainClause | HasClause): string {
    return clause.kind === 'chain' ? this.subSearch(clause.targetType, clause.inner) : this.subSearch(clause.sourceType, clause.inner);
  }

  /**
   * Ids of live resources of `type` the requester may read that match `inner` (a chain's targets, a
   * `_has`'s sources). A value clause is driven from its index rows, each checked against `resource`
   * by key (EXISTS on a unique key): PostgreSQL then estimates the set as about the index rows'
   * count. Written as `resource b WHERE b.id IN (<index rows>)` it estimated a few dozen where there
   * were thousands (docs/search.md, "Chains and _has"), and so collected every match of a broad chain
   * before taking the first page instead of probing rows in page order.
   */
  private subSearch(type: string, inner: Clause): string {
    const b = this.nextAlias('b');
    const ids = inner.kind === 'param' ? this.paramIds(inner) : undefined;
    if (ids && !ids.negated) {
      return `SELECT ${ids.x}.id FROM ${ids.from} WHERE ${ids.where}
            AND EXISTS (SELECT 1 FROM resource ${b} WHERE ${b}.resource_type = ${ids.x}.resource_type AND ${b}.id = ${ids.x}.id AND NOT ${b}.deleted AND ${this.access(b)})`;
    }
    return `SELECT ${b}.id FROM resource ${b}
          WHERE ${b}.resource_type = ${this.params.bind(type)} AND NOT ${b}.deleted AND ${this.access(b)}
            AND ${ids ? `${b}.id NOT IN (SELECT ${ids.x}.id FROM ${ids.from} WHERE ${ids.where})` : this.clause(inner, b)}`;
  }

  private param(c: ParamClause, alias: string): string {
    if (c.def.column) return this.column(c, alias);
    if (c.def.fullText) return this.fullText(c, alias);
    const ids = this.paramIds(c)!;
    return `${alias}.id ${ids.negated ? 'NOT IN' : 'IN'} (SELECT ${ids.x}.id FROM ${ids.from} WHERE ${ids.where})`;
  }

  /** A value clause as index rows: `SELECT x.id FROM <from> WHERE <where>`, matched (or, `negated`, excluded). */
  private paramIds(c: ParamClause): { x: string; from: string; where: string; negated: boolean } | undefined {
    const def = c.def;
    // Columns of `resource` and full text are not index-row clauses (param() renders them).
    if (def.column || def.fullText) return undefined;
    const x = this.nextAlias('x');
    const paramName = def.type === 'reference' && c.modifier === 'identifier' ? `${def.code}:identifier`
      : def.type === 'token' && c.modifier === 'of-type' ? `${def.code}:of-type` : def.code;
    const table = def.type === 'reference' && c.modifier === 'identifier' ? 'search_token' : TABLE[def.type];
    const from = `${table} ${x}`;
    const head = `${x}.resource_type = ${this.params.bind(c.resourceType)} AND ${x}.param = ${this.params.bind(paramName)}`;
    if (c.modifier === 'missing') return { x, from, where: head, negated: !!c.missing };
    if (c.modifier === 'in' || c.modifier === 'not-in' || (def.type === 'token' && (c.modifier === 'above' || c.modifier === 'below'))) {
      return { x, from, where: `${head} AND ${this.valueSetCondition(c, x)}`, negated: c.modifier === 'not-in' };
    }
    const alternatives = c.values.map((v) => this.valueCondition(c, x, v));
    return { x, from, where: `${head} AND (${alternatives.join(' OR ')})`, negated: c.modifier === 'not' };
  }

  /**
   * `_text` / `_content`: each value is a `websearch_to_tsquery` (words AND-ed, `"a phrase"`, `or`,
   * `-word`) against the narrative's or the whole content's tsvector, GIN-indexed; OR values OR-ed.
   */
  private fullText(c: ParamClause, alias: string): string {
    const x = this.nextAlias('x');
    const column = `${x}.${c.def.fullText}`;
    const head = `SELECT ${x}.id FROM search_text ${x} WHERE ${x}.resource_type = ${this.params.bind(c.resourceType)}`;
    if (c.modifier === 'missing') return `${alias}.id ${c.missing ? 'NOT IN' : 'IN'} (${head} AND ${column} IS NOT NULL)`;
    const language = `${this.params.bind(this.textLanguage)}::regconfig`;
    const alternatives = c.values.map((v) => `${column} @@ websearch_to_tsquery(${language}, ${this.params.bind(unescape(v))})`);
    return `${alias}.id IN (${head} AND (${alternatives.join(' OR ')}))`;
  }

  /** `:in` / `:not-in`, token `:above` / `:below`: the (system, code) pairs arrive as two bound arrays. */
  private valueSetCondition(c: ParamClause, x: string): string {
    if (!c.valueSet) throw new Error(`ValueSet of ${c.def.code}:${c.modifier} was not expanded before compiling`);
    const v = this.nextAlias('v');
    return `(${x}.system, ${x}.code) IN (SELECT ${v}.system, ${v}.code FROM unnest(${this.params.bind(c.valueSet.system)}::text[], ${this.params.bind(c.valueSet.code)}::text[]) AS ${v}(system, code))`;
  }

  /**
   * A composite value `a$b[$c]`: every part must hold in the same index row (one value of the
   * composite's expression), each with its component type's semantics and prefixes.
   */
  private compositeCondition(c: ParamClause, x: string, value: string): string {
    const b = (v: unknown): string => this.params.bind(v);
    const parts = splitComposite(value);
    // Stryker disable next-line ArrayDeclaration: unreachable, the registry leaves out composites whose components it cannot resolve
    const components = c.def.components ?? [];
    if (parts.length !== components.length) throw FhirError.badRequest(`${c.def.code}: '${value}' needs ${components.length} parts separated by $`, [c.def.code]);
    const conditions = components.map((component, i) => {
      const slot = (column: string): string => `${x}.c${i + 1}_${column}`;
      const part = parts[i];
      switch (component.type) {
        case 'token':
          return tokenCondition(x, part, b, { system: slot('system'), code: slot('code') });
        case 'quantity':
        case 'number':
          return quantityCondition(x, part, b, c.def.code, { value: slot('number'), system: slot('system'), code: slot('code') });
        case 'date':
          return dateCondition(slot('low'), slot('high'), part, b, c.def.code);
        case 'string':
          return `${slot('code')} LIKE ${b(`${escapeLike(normalizeString(unescape(part)))}%`)}`;
        case 'reference': {
          const ref = unescape(part);
          const m = /^(?:(https?:\/\/.+)\/)?([A-Z][A-Za-z]+\/[A-Za-z0-9\-.]{1,64})$/.exec(ref);
          if (m && (!m[1] || m[1] === this.fhirBaseUrl)) return `${slot('code')} = ${b(m[2])}`;
          if (/^[A-Za-z0-9\-.]{1,64}$/.test(ref)) return `${slot('code')} LIKE ${b(`%/${escapeLike(ref)}`)}`;
          return `${slot('code')} = ${b(ref)}`;
        }
        default:
          return `${slot('code')} = ${b(unescape(part))}`;
      }
    });
    return `(${conditions.join(' AND ')})`;
  }

  private valueCondition(c: ParamClause, x: string, value: string): string {
    const def = c.def;
    const b = (v: unknown): string => this.params.bind(v);
    switch (def.type) {
      case 'token': {
        if (c.modifier === 'text') return `${x}.display LIKE ${b(`${escapeLike(normalizeString(value))}%`)}`;
        if (c.modifier === 'of-type') {
          const [system, code, v] = value.split('|');
          return `${x}.system = ${b(`${system}|${code}`)} AND ${x}.code = ${b(unescape(v))}`;
        }
        // @medplum/core lower-cases ContactPoint values when indexing; match them the same way.
        return tokenCondition(x, value, b, undefined, def.caseInsensitiveCode);
      }
      case 'string': {
        if (c.modifier === 'exact') return `${x}.exact = ${b(unescape(value))}`;
        const norm = escapeLike(normalizeString(unescape(value)));
        return c.modifier === 'contains' ? `${x}.norm LIKE ${b(`%${norm}%`)}` : `${x}.norm LIKE ${b(`${norm}%`)}`;
      }
      case 'uri': {
        const v = unescape(value);
        if (c.modifier === 'below') return `${x}.uri LIKE ${b(`${escapeLike(v)}%`)}`;
        if (c.modifier === 'above') return `${b(v)} LIKE replace(replace(${x}.uri, '%', '\\%'), '_', '\\_') || '%'`;
        return `${x}.uri = ${b(v)}`;
      }
      case 'reference':
        if (c.modifier === 'identifier') return tokenCondition(x, value, b);
        return this.referenceCondition(x, unescape(value), c.def);
      case 'date':
        return dateCondition(`${x}.low`, `${x}.high`, value, b, def.code);
      case 'number':
      case 'quantity':
        if (def.rangeValues) return `(${quantityCondition(x, value, b, def.code)} OR ${rangeCondition(x, value, b)})`;
        return quantityCondition(x, value, b, def.code);
      case 'composite':
        return this.compositeCondition(c, x, value);
    }
    // Stryker disable next-line StringLiteral: unreachable, the registry indexes exactly the types switched on above
    return 'FALSE';
  }

  private referenceCondition(x: string, value: string, def: SearchParamDef): string {
    const b = (v: unknown): string => this.params.bind(v);
    const m = /^(?:(https?:\/\/.+)\/)?([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/.+)?$/.exec(value);
    if (m && (!m[1] || m[1] === this.fhirBaseUrl)) return `${x}.target_type = ${b(m[2])} AND ${x}.target_id = ${b(m[3])}`;
    if (/^https?:\/\//.test(value) || value.startsWith('urn:')) return `${x}.url = ${b(value)}`;
    if (!/^[A-Za-z0-9\-.]{1,64}$/.test(value)) throw FhirError.badRequest(`${def.code}: '${value}' is not a reference`, [def.code]);
    return `${x}.target_id = ${b(value)}`;
  }

  private column(c: ParamClause, alias: string): string {
    const b = (v: unknown): string => this.params.bind(v);
    if (c.def.column === 'id') {
      if (c.modifier === 'missing') return c.missing ? 'FALSE' : 'TRUE';
      const inList = `${alias}.id = ANY(${b(c.values.map(unescape))}::text[])`;
      return c.modifier === 'not' ? `NOT (${inList})` : inList;
    }
    if (c.modifier === 'missing') return c.missing ? 'FALSE' : 'TRUE';
    const col = `${alias}.last_updated`;
    return `(${c.values.map((v) => dateCondition(col, col, v, b, c.def.code, true)).join(' OR ')})`;
  }

  /**
   * ORDER BY keys: expressions over `r`, with a direction; the last key is always r.id. A search
   * parameter's key is the resource's lowest value ascending and its highest descending; a resource
   * without one has a NULL key, which sorts last either way (`nullable`).
   */
  sortExpressions(ast: SearchRequestAst): { expr: string; descending: boolean; cast: string; nullable?: boolean }[] {
    return ast.sort.map((key) => {
      const { def, descending } = key;
      if (def.column === 'id') return { expr: 'r.id', descending, cast: 'text' };
      if (def.column === 'last_updated') return { expr: 'r.last_updated', descending, cast: 'timestamptz' };
      const k = sortKeyColumn(key);
      if (!k) throw FhirError.badRequest(`Cannot sort by parameter '${def.code}'`, ['_sort']);
      const p = this.params.bind(def.code);
      const x = this.nextAlias('s');
      return {
        expr: `(SELECT ${k.aggregate}(${x}.${k.column}) FROM ${k.table} ${x} WHERE ${x}.resource_type = r.resource_type AND ${x}.id = r.id AND ${x}.param = ${p})`,
        descending,
        cast: k.cast,
        nullable: true,
      };
    });
  }
}

function tokenCondition(
  x: string,
  value: string,
  b: (v: unknown) => string,
  col: { system: string; code: string } = { system: `${x}.system`, code: `${x}.code` },
  lowerCaseCode = false,
): string {
  const bar = indexOfUnescaped(value, '|');
  const codeOf = (raw: string): string => (lowerCaseCode ? unescape(raw).toLowerCase() : unescape(raw));
  if (bar < 0) return `${col.code} = ${b(codeOf(value))}`;
  const system = unescape(value.slice(0, bar));
  const code = codeOf(value.slice(bar + 1));
  if (!system) return `${col.system} IS NULL AND ${col.code} = ${b(code)}`;
  if (!code) return `${col.system} = ${b(system)}`;
  return `${col.code} = ${b(code)} AND ${col.system} = ${b(system)}`;
}

/**
 * Date prefixes (search.html#prefix) over a stored range [low, high) against the value's
 * precision range [S, E). `point`: the column is an instant (e.g. _lastUpdated).
 */
export function dateCondition(low: string, high: string, raw: string, b: (v: unknown) => string, name: string, point = false): string {
  const [prefix, value] = splitPrefix(raw);
  const range = parseFhirDateRange(value);
  if (!range) throw FhirError.badRequest(`${name}: '${raw}' is not a valid date`, [name]);
  // Bound only when used: an unused parameter has no type Postgres could infer.
  const S = (): string => `${b(range.start)}::timestamptz`;
  const E = (): string => `${b(range.end)}::timestamptz`;
  const hi = point ? `${high} + interval '1 millisecond'` : high;
  switch (prefix) {
    case 'eq':
      // `low <= E` is implied (low <= high) but bounds the index range scan on low.
      return `(${low} >= ${S()} AND ${low} <= ${E()} AND ${hi} <= ${E()})`;
    case 'ne':
      return `NOT (${low} >= ${S()} AND ${hi} <= ${E()})`;
    case 'gt':
      return `${hi} > ${E()}`;
    case 'lt':
      return `${low} < ${S()}`;
    case 'ge':
      return `${hi} > ${S()}`;
    case 'le':
      return `${low} < ${E()}`;
    case 'sa':
      return `${low} >= ${E()}`;
    case 'eb':
      return `${hi} <= ${S()}`;
    default: {
      // ap: within 10% of the distance between now and the value, at least a day.
      const now = Date.now();
      const spread = Math.max(Math.abs(now - Date.parse(range.start)) * 0.1, 86_400_000);
      const s2 = `${b(instantText(Date.parse(range.start) - spread, 'start'))}::timestamptz`;
      const e2 = `${b(instantText(Date.parse(range.end) + spread, 'end'))}::timestamptz`;
      return `(${low} < ${e2} AND ${hi} > ${s2})`;
    }
  }
}

/** Numbers carry implicit precision: `100` means [99.5, 100.5); `1e2` likewise at its precision. */
function quantityCondition(
  x: string,
  raw: string,
  b: (v: unknown) => string,
  name: string,
  col: { value: string; system: string; code: string } = { value: `${x}.value`, system: `${x}.system`, code: `${x}.code` },
): string {
  const [prefix, rest] = splitPrefix(raw);
  const [numText, system, code] = rest.split('|');
  const v = Number(numText);
  if (!Number.isFinite(v)) throw FhirError.badRequest(`${name}: '${raw}' is not a number`, [name]);
  // Bounds in exact decimal arithmetic: the index holds decimals as received (0.1000000000000000055…).
  const [low, high] = decimalPrecisionRange(numText);
  // Binary floating point (ap only): 5.4 - 0.54 is 4.8599999999999994.
  const bound = (n: number): number => Number(n.toPrecision(15));
  const value = col.value;
  let cond: string;
  switch (prefix) {
    case 'eq':
      cond = `${value} >= ${b(low)} AND ${value} < ${b(high)}`;
      break;
    case 'ne':
      cond = `NOT (${value} >= ${b(low)} AND ${value} < ${b(high)})`;
      break;
    case 'gt':
    case 'sa':
      cond = `${value} > ${b(numericParam(numText))}`;
      break;
    case 'lt':
    case 'eb':
      cond = `${value} < ${b(numericParam(numText))}`;
      break;
    case 'ge':
      cond = `${value} >= ${b(numericParam(numText))}`;
      break;
    case 'le':
      cond = `${value} <= ${b(numericParam(numText))}`;
      break;
    default:
      cond = `${value} >= ${b(bound(v - Math.abs(v) * 0.1))} AND ${value} <= ${b(bound(v + Math.abs(v) * 0.1))}`;
  }
  if (system) cond += ` AND ${col.system} = ${b(system)}`;
  if (code) cond += ` AND ${col.code} = ${b(code)}`;
  return `(${cond})`;
}

/**
 * A Range row (value NULL, bounds low..high, open ends infinite) against a search value, as R4
 * search's prefix table says for ranges: eq — the search value's implicit range [v-½ulp, v+½ulp)
 * contains the target's range; ne — it does not; gt/lt — the target's range reaches above / below
 * the search value; ge/le — as gt/lt, or eq; sa/eb — the target's range lies wholly above / below
 * it; ap — the ranges overlap within ±10%. The value was checked by quantityCondition, which
 * the caller ORs this with.
 */
function rangeCondition(x: string, raw: string, b: (v: unknown) => string): string {
  const [prefix, rest] = splitPrefix(raw);
  const [numText, system, code] = rest.split('|');
  const v = Number(numText);
  const decimals = (numText.split(/[eE]/)[0].split('.')[1] ?? '').length;
  const half = 0.5 * 10 ** (Number(numText.split(/[eE]/)[1] ?? 0) - decimals);
  const bound = (n: number): number => Number(n.toPrecision(15));
  const low = `${x}.low`;
  const high = `${x}.high`;
  const contained = (): string => `(${low} >= ${b(bound(v - half))} AND ${high} < ${b(bound(v + half))})`;
  let cond: string;
  switch (prefix) {
    case 'eq':
      cond = contained();
      break;
    case 'ne':
      cond = `NOT ${contained()}`;
      break;
    case 'gt':
      cond = `${high} > ${b(v)}`;
      break;
    case 'lt':
      cond = `${low} < ${b(v)}`;
      break;
    case 'ge':
      cond = `(${high} >= ${b(v)} OR ${contained()})`;
      break;
    case 'le':
      cond = `(${low} <= ${b(v)} OR ${contained()})`;
      break;
    case 'sa':
      cond = `${low} > ${b(v)}`;
      break;
    case 'eb':
      cond = `${high} < ${b(v)}`;
      break;
    default:
      cond = `${low} <= ${b(bound(v + Math.abs(v) * 0.1))} AND ${high} >= ${b(bound(v - Math.abs(v) * 0.1))}`;
  }
  if (system) cond += ` AND ${x}.system = ${b(system)}`;
  if (code) cond += ` AND ${x}.code = ${b(code)}`;
  return `(${x}.value IS NULL AND ${cond})`;
}

/**
 * The implicit precision range [v - h, v + h) of a decimal as written (search.html#number): `100`
 * is [99.5, 100.5), `1.50` [1.495, 1.505), `1e2` [50, 150). Exact (BigInt), as numeric parameters.
 */
export function decimalPrecisionRange(text: string): [number | string, number | string] {
  const m = /^([-+]?)(\d+)(?:\.(\d+))?(?:[eE]([-+]?\d+))?$/.exec(text);
  if (!m) throw new Error(`not a decimal: ${text}`);
  const [, sign, int, frac = '', exp = '0'] = m;
  // text = digits × 10^-scale; at one more digit of scale, the half unit is 5.
  const scale = frac.length - Number(exp) + 1;
  const v = BigInt(`${sign === '-' ? '-' : ''}${int}${frac}`) * 10n;
  const at = (n: bigint): number | string => numericParam(scale <= 0 ? (n * 10n ** BigInt(-scale)).toString() : withScale(n, scale));
  return [at(v - 5n), at(v + 5n)];
}

function withScale(n: bigint, scale: number): string {
  const digits = (n < 0n ? -n : n).toString().padStart(scale + 1, '0');
  return `${n < 0n ? '-' : ''}${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
}

/** A decimal parameter: a number where that is exact, else the text (PostgreSQL reads it as numeric). */
function numericParam(text: string): number | string {
  const t = text.replace(/^\+/, '');
  return String(Number(t)) === t ? Number(t) : t;
}

function escapeLike(s: string): string {
  return s.replace(/[\\%_]/g, (c) => `\\${c}`);
}

/** A search value with its escapes (a backslash before a comma, bar, dollar or backslash) resolved, as bound to SQL. */
export function unescape(s: string): string {
  return s.replace(/\\([,|$\\])/g, '$1');
}

/** The first `ch` not escaped by a backslash, or -1. */
export function indexOfUnescaped(s: string, ch: string): number {
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '\\') i++;
    else if (s[i] === ch) return i;
  }
  return -1;
}
