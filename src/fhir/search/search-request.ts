import { FhirError } from '../../common/fhir-error';
import { parseFhirDateRange, plusInZoneHint } from '../../common/fhir-date';
import { FhirDefinitions } from '../definitions/fhir-definitions';
import type { QueryParams } from '../pipeline/interaction';
import { parseElements, parseSummary, SummaryMode } from '../response/resource-subsetting';
import { splitComposite } from './search-composite';
import { SEARCH_LIMITS, tooCostly } from './search-limits';
import { SearchParamDef, searchParamsOf } from './search-parameter.registry';

/** One search parameter condition; values are OR-ed. */
export interface ParamClause {
  kind: 'param';
  resourceType: string;
  def: SearchParamDef;
  modifier?: string;
  /** For `:missing`. */
  missing?: boolean;
  values: string[];
  /** For `:in` / `:not-in`: the union of the named ValueSets' codes; for token `:above` / `:below`: the codes' closure in their stored CodeSystems. Filled in before compiling. */
  valueSet?: CodeSet;
}

/** Codes of a ValueSet expansion as parallel arrays, bound to SQL as two array parameters. */
export interface CodeSet {
  system: string[];
  code: string[];
}

/** `subject:Patient.name=x`: resources whose reference points at a target matching `inner`. */
export interface ChainClause {
  kind: 'chain';
  resourceType: string;
  def: SearchParamDef;
  targetType: string;
  inner: Clause;
}

/** `_has:Observation:patient:code=x`: resources referenced (by `param`) from a source matching `inner`. */
export interface HasClause {
  kind: 'has';
  resourceType: string;
  sourceType: string;
  referenceParam: string;
  inner: Clause;
}

/**
 * `subject.name=x` over a reference that may point at several types: the union of the typed chains
 * into each target type that defines the chained parameter (search.html#chaining).
 */
export interface UntypedChainClause {
  kind: 'untyped-chain';
  resourceType: string;
  def: SearchParamDef;
  chains: ChainClause[];
}

export type Clause = ParamClause | ChainClause | HasClause | UntypedChainClause;

export interface SortKey {
  /** `_id`, `_lastUpdated`, or an indexed parameter. */
  def: SearchParamDef;
  descending: boolean;
}

export interface IncludeSpec {
  sourceType: string;
  /** `*` for every reference parameter. */
  param: string;
  targetType?: string;
  iterate: boolean;
}

export interface SearchRequestAst {
  resourceTypes: string[];
  /** AND of clauses; for a system search, each type gets its own list (parameters are per type). */
  clauses: Map<string, Clause[]>;
  sort: SortKey[];
  count: number;
  cursor?: { direction: 'next' | 'prev'; values: (string | null)[]; id: string };
  total: 'none' | 'estimate' | 'accurate';
  include: IncludeSpec[];
  revinclude: IncludeSpec[];
  summary?: SummaryMode;
  elements?: string[];
  compartment?: { type: string; id: string };
  /** Parameters ignored under `handling=lenient`, reported in the Bundle. */
  ignored: string[];
}

const DEFAULT_COUNT = 20;
export const MAX_COUNT = 1000;
const RESULT_PARAMS = new Set([
  '_count', '_sort', '_total', '_include', '_revinclude', '_include:iterate', '_revinclude:iterate',
  '_summary', '_elements', '_format', '_pretty', '_cursor', '_type',
]);
const MODIFIERS: Record<string, Set<string>> = {
  token: new Set(['not', 'text', 'missing', 'of-type', 'in', 'not-in', 'above', 'below']),
  string: new Set(['exact', 'contains', 'missing']),
  date: new Set(['missing']),
  number: new Set(['missing']),
  quantity: new Set(['missing']),
  reference: new Set(['missing', 'identifier']),
  uri: new Set(['below', 'above', 'missing']),
  composite: new Set(['missing']),
};
const PREFIXES = ['eq', 'ne', 'gt', 'lt', 'ge', 'le', 'sa', 'eb', 'ap'];
/** Typed chains one untyped chain may expand to, nested links multiplied (`Provenance?target.name` names dozens of types). */
export const MAX_UNTYPED_CHAIN_TARGETS = 50;
const ID_RE = /^[A-Za-z0-9\-.]{1,64}$/;

/**
 * Parses FHIR search parameters (search.html) into a small AST, validating every value so a
 * malformed one fails with 400 naming the parameter before any SQL runs.
 */
export function parseSearchRequest(
  resourceTypes: string[],
  query: QueryParams,
  options: { strict: boolean; compartment?: { type: string; id: string } },
): SearchRequestAst {
  const ignored: string[] = [];
  const clauses = new Map<string, Clause[]>(resourceTypes.map((t) => [t, []]));
  for (const [name, raw] of Object.entries(query)) {
    if (raw === undefined) continue;
    const values = Array.isArray(raw) ? raw : [raw];
    // PostgreSQL text cannot hold NUL: refuse it here rather than fail in the driver.
    if (name.includes('\0') || values.some((v) => v.includes('\0'))) {
      const shown = name.replace(/\0/g, '\\0').slice(0, 100);
      throw FhirError.badRequest(`Search parameter ${shown} contains a NUL character`, [shown]);
    }
    if (RESULT_PARAMS.has(name)) continue;
    for (const type of resourceTypes) {
      const list = clauses.get(type)!;
      for (const value of values) {
        const clause = parseClause(type, name, value, { name, chain: 0, has: 0 });
        if (clause === 'unknown') {
          if (options.strict) throw FhirError.badRequest(`Unknown or unsupported search parameter '${name}' for ${type}`, [name], 'not-supported');
          if (!ignored.includes(name)) ignored.push(name);
          continue;
        }
        if (list.length >= SEARCH_LIMITS.clauses) {
          throw tooCostly(`The search has more than ${SEARCH_LIMITS.clauses} clauses: at most ${SEARCH_LIMITS.clauses} search parameter clauses per request`, name);
        }
        list.push(clause);
      }
    }
  }
  const first = (n: string): string | undefined => {
    const v = query[n];
    return Array.isArray(v) ? v[v.length - 1] : v;
  };
  const countRaw = first('_count');
  if (countRaw !== undefined && !/^\d{1,7}$/.test(countRaw)) throw FhirError.badRequest(`_count must be a non-negative integer, got '${countRaw}'`, ['_count']);
  const total = first('_total') ?? 'none';
  if (!['none', 'estimate', 'accurate'].includes(total)) throw FhirError.badRequest(`_total must be none, estimate or accurate`, ['_total']);
  const summary = parseSummary(first('_summary'), true);
  const include = allOf(query, '_include');
  const revinclude = allOf(query, '_revinclude');
  if (include.length + revinclude.length > SEARCH_LIMITS.includes) {
    throw tooCostly(
      `${include.length + revinclude.length} includes: at most ${SEARCH_LIMITS.includes} _include and _revinclude parameters per request`,
      include.length > SEARCH_LIMITS.includes || !revinclude.length ? '_include' : '_revinclude',
    );
  }
  return {
    resourceTypes,
    clauses,
    sort: parseSort(resourceTypes, first('_sort')),
    count: Math.min(countRaw === undefined ? DEFAULT_COUNT : Number(countRaw), MAX_COUNT),
    cursor: parseCursor(first('_cursor')),
    total: summary === 'count' ? 'accurate' : (total as SearchRequestAst['total']),
    include: include.map((v) => parseInclude(v, '_include')),
    revinclude: revinclude.map((v) => parseInclude(v, '_revinclude')),
    summary,
    elements: parseElements(first('_elements')),
    compartment: options.compartment,
    ignored,
  };
}

function allOf(query: QueryParams, name: string): string[] {
  const list = (v: string | string[] | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
  return [...list(query[name]), ...list(query[`${name}:iterate`]).map((x) => `${x}:iterate`)];
}

/** The parameter as the client wrote it, and how deep inside chains and `_has` the parser is. */
interface ClauseDepth {
  name: string;
  chain: number;
  has: number;
}

function parseClause(resourceType: string, name: string, value: string, depth: ClauseDepth): Clause | 'unknown' {
  if (name.startsWith('_has:')) {
    if (depth.has >= SEARCH_LIMITS.hasDepth) throw tooCostly(`${depth.name}: at most ${SEARCH_LIMITS.hasDepth} nested _has`, depth.name);
    return parseHas(resourceType, name, value, { ...depth, has: depth.has + 1 });
  }
  const dot = name.indexOf('.');
  if (dot > 0) {
    if (depth.chain >= SEARCH_LIMITS.chainDepth) throw tooCostly(`${depth.name}: at most ${SEARCH_LIMITS.chainDepth} chained references`, depth.name);
    return parseChain(resourceType, name.slice(0, dot), name.slice(dot + 1), value, { ...depth, chain: depth.chain + 1 });
  }
  const [code, modifier] = splitModifier(name);
  const def = searchParamsOf(resourceType).get(code);
  if (!def) return 'unknown';
  if (def.fullText && modifier !== undefined && modifier !== 'missing') throw FhirError.badRequest(`Unknown modifier :${modifier} on ${code}`, [name]);
  if (modifier !== undefined && def.type === 'reference' && FhirDefinitions.get().isStorable(modifier)) {
    if (!def.targets.includes(modifier)) throw FhirError.badRequest(`${code} cannot refer to ${modifier}`, [name]);
    return { kind: 'param', resourceType, def, modifier, values: orValues(value, depth).map((v) => (v.includes('/') ? v : `${modifier}/${v}`)) };
  }
  // Stryker disable next-line OptionalChaining: equivalent, MODIFIERS has an entry for every IndexedParamType a definition can have
  if (modifier !== undefined && !MODIFIERS[def.type]?.has(modifier)) {
    if (modifier === 'above' || modifier === 'below') {
      throw FhirError.notSupported(`Modifier :${modifier} is not supported for ${def.type} parameter ${code}`);
    }
    throw FhirError.badRequest(`Unknown modifier :${modifier} on ${code}`, [name]);
  }
  if (modifier === 'missing') {
    if (value !== 'true' && value !== 'false') throw FhirError.badRequest(`${name} must be true or false`, [name]);
    return { kind: 'param', resourceType, def, modifier, missing: value === 'true', values: [] };
  }
  const values = orValues(value, depth);
  if (!values.length || values.some((v) => v === '')) throw FhirError.badRequest(`Empty value for search parameter ${name}`, [name]);
  for (const v of values) validateValue(def, modifier, v, name);
  return { kind: 'param', resourceType, def, modifier, values };
}

function orValues(value: string, depth: ClauseDepth): string[] {
  const values = splitValues(value);
  if (values.length > SEARCH_LIMITS.orValues) {
    throw tooCostly(`${depth.name} has ${values.length} values: at most ${SEARCH_LIMITS.orValues} OR values per parameter`, depth.name);
  }
  return values;
}

function parseChain(resourceType: string, head: string, rest: string, value: string, depth: ClauseDepth): Clause {
  const [code, typeModifier] = splitModifier(head);
  const def = searchParamsOf(resourceType).get(code);
  if (!def || def.type !== 'reference') throw FhirError.badRequest(`Chained parameter '${head}' is not a reference parameter of ${resourceType}`, [`${head}.${rest}`]);
  const targets = typeModifier ? [typeModifier] : def.targets;
  if (typeModifier && !def.targets.includes(typeModifier)) throw FhirError.badRequest(`${code} cannot refer to ${typeModifier}`, [`${head}.${rest}`]);
  if (targets.length !== 1) return parseUntypedChain(resourceType, def, head, rest, value, depth);
  const inner = parseClause(targets[0], rest, value, depth);
  if (inner === 'unknown') throw FhirError.badRequest(`Unknown search parameter '${rest}' on ${targets[0]} in chain`, [`${head}.${rest}`]);
  return { kind: 'chain', resourceType, def, targetType: targets[0], inner };
}

/** A chain without a type modifier: one typed chain per target type that defines what follows. */
function parseUntypedChain(resourceType: string, def: SearchParamDef, head: string, rest: string, value: string, depth: ClauseDepth): Clause {
  const chains: ChainClause[] = [];
  for (const targetType of def.targets.filter((t) => definesChained(t, rest))) {
    const inner = parseClause(targetType, rest, value, depth);
    if (inner !== 'unknown') chains.push({ kind: 'chain', resourceType, def, targetType, inner });
  }
  if (!chains.length) {
    throw FhirError.badRequest(`Unknown search parameter '${rest}' in chain: none of the types ${head} can refer to (${def.targets.join(', ')}) defines it`, [`${head}.${rest}`]);
  }
  const expanded = chains.reduce((n, c) => n + typedChains(c.inner), 0);
  if (expanded > MAX_UNTYPED_CHAIN_TARGETS) {
    throw tooCostly(`${depth.name}: the chain without a type modifier expands to ${expanded} typed chains (at most ${MAX_UNTYPED_CHAIN_TARGETS}); name the type (${head}:Type.${rest})`, depth.name);
  }
  return chains.length === 1 ? chains[0] : { kind: 'untyped-chain', resourceType, def, chains };
}

/** Typed chains a clause stands for (1 for anything but an untyped chain). */
function typedChains(c: Clause): number {
  if (c.kind === 'untyped-chain') return c.chains.reduce((n, x) => n + typedChains(x.inner), 0);
  return c.kind === 'chain' ? typedChains(c.inner) : 1;
}

/** Whether `type` defines the parameter a chain continues with (a reference parameter if the chain goes on). */
function definesChained(type: string, rest: string): boolean {
  if (rest.startsWith('_has:')) return true;
  const dot = rest.indexOf('.');
  const def = searchParamsOf(type).get(splitModifier(dot > 0 ? rest.slice(0, dot) : rest)[0]);
  return !!def && (dot < 0 || def.type === 'reference');
}

function parseHas(resourceType: string, name: string, value: string, depth: ClauseDepth): Clause {
  const m = /^_has:([A-Z][A-Za-z]+):([A-Za-z0-9\-_]+):(.+)$/.exec(name);
  if (!m) throw FhirError.badRequest(`_has must be _has:Type:reference-param:search-param`, [name]);
  const [, sourceType, referenceParam, rest] = m;
  if (!FhirDefinitions.get().isStorable(sourceType)) throw FhirError.badRequest(`Unknown resource type ${sourceType} in _has`, [name]);
  const ref = searchParamsOf(sourceType).get(referenceParam);
  if (!ref || ref.type !== 'reference') throw FhirError.badRequest(`${referenceParam} is not a reference parameter of ${sourceType}`, [name]);
  const inner = parseClause(sourceType, rest, value, depth);
  if (inner === 'unknown') throw FhirError.badRequest(`Unknown search parameter '${rest}' on ${sourceType} in _has`, [name]);
  return { kind: 'has', resourceType, sourceType, referenceParam, inner };
}

function splitModifier(name: string): [string, string | undefined] {
  const colon = name.indexOf(':');
  return colon < 0 ? [name, undefined] : [name.slice(0, colon), name.slice(colon + 1)];
}

/** Commas separate OR values; `\,` is a literal comma. */
export function splitValues(value: string): string[] {
  const out: string[] = [];
  let current = '';
  for (let i = 0; i < value.length; i++) {
    if (value[i] === '\\' && i + 1 < value.length && (value[i + 1] === ',' || value[i + 1] === '|' || value[i + 1] === '$' || value[i + 1] === '\\')) {
      current += value[i] + value[i + 1];
      i++;
    } else if (value[i] === ',') {
      out.push(current);
      current = '';
    } else current += value[i];
  }
  out.push(current);
  return out;
}

export function splitPrefix(value: string): [string, string] {
  const p = value.slice(0, 2);
  return PREFIXES.includes(p) && value.length > 2 && /[0-9\-+.]/.test(value[2]) ? [p, value.slice(2)] : ['eq', value];
}

function validateValue(def: SearchParamDef, modifier: string | undefined, value: string, name: string): void {
  if (def.type === 'composite') {
    const parts = splitComposite(value);
    // Stryker disable next-line ArrayDeclaration: equivalent, R4 and custom composites are registered only with their components
    const components = def.components ?? [];
    if (parts.length !== components.length || parts.some((p) => p === '')) {
      throw FhirError.badRequest(`${name}: '${value}' must have ${components.length} parts separated by $ (${components.map((c) => c.type).join('$')})`, [name]);
    }
    components.forEach((c, i) => validateValue({ ...def, type: c.type, column: undefined, components: undefined }, undefined, parts[i], name));
  } else if (def.type === 'date') {
    const [prefix, rest] = splitPrefix(value);
    if (!parseFhirDateRange(rest)) throw FhirError.badRequest(`${name}: '${value}' is not a valid date (prefix ${prefix})${plusInZoneHint(rest)}`, [name]);
  } else if (def.type === 'number' || def.type === 'quantity') {
    const [, rest] = splitPrefix(value);
    const [num, system, code, extra] = rest.split('|');
    if (!/^[-+]?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(num) || extra !== undefined || (def.type === 'number' && system !== undefined)) {
      throw FhirError.badRequest(`${name}: '${value}' is not a valid ${def.type}`, [name]);
    }
    void code;
  } else if (def.column === 'id' && !ID_RE.test(value)) {
    throw FhirError.badRequest(`${name}: '${value}' is not a valid id`, [name]);
  } else if (def.type === 'token' && modifier === 'of-type' && value.split('|').length !== 3) {
    throw FhirError.badRequest(`${name} needs system|code|value`, [name]);
  } else if (def.type === 'token' && (modifier === 'in' || modifier === 'not-in') && !/^[^\s|]+(\|[^\s|]+)?$/.test(value)) {
    throw FhirError.badRequest(`${name}: '${value}' is not a ValueSet canonical URL`, [name]);
  } else if (def.type === 'token' && (modifier === 'above' || modifier === 'below') && !/^[^|]+\|[^|]+$/.test(value.replace(/\\[|\\]/g, ''))) {
    // Subsumption is defined within one code system: the system names the stored CodeSystem to walk.
    throw FhirError.badRequest(`${name}: '${value}' must be system|code (the code system says what is above or below the code)`, [name]);
  }
}

function parseSort(resourceTypes: string[], raw: string | undefined): SortKey[] {
  if (!raw) return [];
  const parts = raw.split(',');
  if (parts.length > SEARCH_LIMITS.sortKeys) throw tooCostly(`_sort has ${parts.length} keys: at most ${SEARCH_LIMITS.sortKeys} sort keys`, '_sort');
  return parts.map((part) => {
    const descending = part.startsWith('-');
    const code = descending ? part.slice(1) : part;
    const def = resourceTypes.map((t) => searchParamsOf(t).get(code)).find(Boolean);
    if (!def) throw FhirError.badRequest(`Cannot sort by unknown parameter '${code}'`, ['_sort']);
    if (def.type === 'composite') throw FhirError.badRequest(`Cannot sort by composite parameter '${code}'`, ['_sort']);
    if (def.fullText) throw FhirError.badRequest(`Cannot sort by ${code}: full-text matches are not ranked`, ['_sort']);
    return { def, descending };
  });
}

function parseInclude(value: string, name: string): IncludeSpec {
  const iterate = value.endsWith(':iterate');
  const parts = (iterate ? value.slice(0, -':iterate'.length) : value).split(':');
  const [sourceType, param, targetType] = parts;
  if (parts.length < 2 || parts.length > 3 || !FhirDefinitions.get().isStorable(sourceType)) {
    throw FhirError.badRequest(`${name} must be SourceType:param[:TargetType], got '${value}'`, [name]);
  }
  if (param !== '*' && searchParamsOf(sourceType).get(param)?.type !== 'reference') {
    throw FhirError.badRequest(`${name}: ${param} is not a reference parameter of ${sourceType}`, [name]);
  }
  if (targetType && !FhirDefinitions.get().isStorable(targetType)) throw FhirError.badRequest(`${name}: unknown type ${targetType}`, [name]);
  return { sourceType, param, targetType, iterate };
}

function parseCursor(raw: string | undefined): SearchRequestAst['cursor'] {
  if (raw === undefined) return undefined;
  try {
    const decoded = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as { d: string; v: (string | null)[]; i: string };
    if ((decoded.d !== 'n' && decoded.d !== 'p') || !Array.isArray(decoded.v) || typeof decoded.i !== 'string') throw new Error();
    return { direction: decoded.d === 'n' ? 'next' : 'prev', values: decoded.v, id: decoded.i };
  } catch {
    throw FhirError.badRequest('_cursor is not a cursor this server issued', ['_cursor']);
  }
}

export function encodeCursor(direction: 'next' | 'prev', values: (string | null)[], id: string): string {
  return Buffer.from(JSON.stringify({ d: direction === 'next' ? 'n' : 'p', v: values, i: id })).toString('base64url');
}

/**
 * A parsed search to compile once more: the clauses copied (the expanders fill in `valueSet`, and
 * access checks narrow an untyped chain's `chains`, per use), the parameter definitions shared.
 */
export function copySearchRequest(ast: SearchRequestAst): SearchRequestAst {
  const copy = (c: Clause): Clause => {
    switch (c.kind) {
      case 'param':
        return { ...c, values: [...c.values] };
      case 'chain':
      case 'has':
        return { ...c, inner: copy(c.inner) };
      case 'untyped-chain':
        return { ...c, chains: c.chains.map((chain) => copy(chain) as ChainClause) };
    }
  };
  return { ...ast, clauses: new Map([...ast.clauses].map(([type, list]) => [type, list.map(copy)])) };
}
