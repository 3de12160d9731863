import type { CodeSystem, CodeSystemConcept, ValueSet, ValueSetComposeInclude, ValueSetExpansionContains } from '@medplum/fhirtypes';
import type { DataSource, EntityManager } from 'typeorm';
import { FhirError } from '../../common/fhir-error';
import type { AccessContext } from '../pipeline/access-context';
import { Clause, CodeSet, ParamClause, SearchRequestAst } from './search-request';
import { SearchSqlCompiler, SqlParams } from './search-sql.compiler';

/** Larger expansions are refused (too-costly) rather than bound as huge arrays. */
export const MAX_EXPANSION = 10_000;
/** ValueSets importing ValueSets: bounded depth (cycles are cut by the visited set). */
const MAX_IMPORT_DEPTH = 5;

type Codes = Map<string, [system: string, code: string]>;
const key = (system: string, code: string): string => `${system}\u0000${code}`;

/**
 * Expands the ValueSets named by `:in` / `:not-in` token clauses from ValueSet and CodeSystem
 * resources stored on this server (read through the same AccessContext), and attaches the codes
 * to each clause, so the compiler binds them as array parameters. Runs once per search, before
 * compiling; expansions are not cached in memory, so every app instance sees the stored terminology.
 */
export async function expandValueSetClauses(
  ast: SearchRequestAst,
  ctx: AccessContext,
  fhirBaseUrl: string,
  runner: DataSource | EntityManager,
): Promise<void> {
  const clauses: ParamClause[] = [];
  const visit = (c: Clause): void => {
    if (c.kind === 'param') {
      if (c.modifier === 'in' || c.modifier === 'not-in') clauses.push(c);
    } else if (c.kind === 'untyped-chain') c.chains.forEach(visit);
    else visit(c.inner);
  };
  for (const list of ast.clauses.values()) list.forEach(visit);
  if (!clauses.length) return;
  const expander = new ValueSetExpansion(ctx, fhirBaseUrl, runner);
  for (const clause of clauses) {
    const name = `${clause.def.code}:${clause.modifier}`;
    const union: Codes = new Map();
    for (const url of clause.values) {
      for (const [k, pair] of await expander.valueSet(url, name, 0, new Set())) union.set(k, pair);
      expander.assertSize(union, name);
    }
    const set: CodeSet = { system: [], code: [] };
    for (const [system, code] of union.values()) {
      set.system.push(system);
      set.code.push(code);
    }
    clause.valueSet = set;
  }
}

class ValueSetExpansion {
  /** Per-search memo only (several clauses or types naming one ValueSet). */
  private readonly expanded = new Map<string, Codes>();

  constructor(
    private readonly ctx: AccessContext,
    private readonly fhirBaseUrl: string,
    private readonly runner: DataSource | EntityManager,
  ) {}

  assertSize(codes: Codes, name: string): void {
    if (codes.size > MAX_EXPANSION) {
      throw FhirError.badRequest(`${name}: the ValueSet expansion has more than ${MAX_EXPANSION} codes`, [name], 'too-costly');
    }
  }

  async valueSet(canonical: string, name: string, depth: number, visiting: Set<string>): Promise<Codes> {
    const memo = this.expanded.get(canonical);
    if (memo) return memo;
    if (depth > MAX_IMPORT_DEPTH || visiting.has(canonical)) {
      throw FhirError.badRequest(`${name}: ValueSet ${canonical} imports itself or nests too deeply`, [name], 'not-supported');
    }
    const vs = await this.load<ValueSet>('ValueSet', canonical);
    if (!vs) throw FhirError.badRequest(`${name}: no ValueSet with url ${canonical} on this server`, [name], 'not-found');
    const inner = new Set(visiting).add(canonical);
    const codes: Codes = new Map();
    const addContains = (list: ValueSetExpansionContains[] | undefined): void => {
      for (const c of list ?? []) {
        if (c.system && c.code && !c.abstract) codes.set(key(c.system, c.code), [c.system, c.code]);
        addContains(c.contains);
      }
    };
    addContains(vs.expansion?.contains);
    for (const include of vs.compose?.include ?? []) {
      for (const [k, pair] of await this.include(include, name, depth, inner)) codes.set(k, pair);
      this.assertSize(codes, name);
    }
    for (const exclude of vs.compose?.exclude ?? []) {
      for (const k of (await this.include(exclude, name, depth, inner)).keys()) codes.delete(k);
    }
    this.assertSize(codes, name);
    this.expanded.set(canonical, codes);
    return codes;
  }

  /** One include/exclude: its system (listed concepts, or the whole stored CodeSystem) intersected with each imported ValueSet. */
  private async include(include: ValueSetComposeInclude, name: string, depth: number, visiting: Set<string>): Promise<Codes> {
    if (include.filter?.length) {
      throw FhirError.badRequest(`${name}: ValueSets with compose filters cannot be expanded by this server`, [name], 'not-supported');
    }
    let codes: Codes | undefined;
    if (include.system) {
      const system = include.system;
      codes = new Map();
      if (include.concept?.length) {
        for (const c of include.concept) if (c.code) codes.set(key(system, c.code), [system, c.code]);
      } else {
        const cs = await this.load<CodeSystem>('CodeSystem', include.version ? `${system}|${include.version}` : system);
        if (!cs) throw FhirError.badRequest(`${name}: code system ${system} is not on this server, so the ValueSet cannot be expanded`, [name], 'not-supported');
        const walk = (concepts: CodeSystemConcept[] | undefined): void => {
          for (const c of concepts ?? []) {
            if (c.code) codes!.set(key(system, c.code), [system, c.code]);
            this.assertSize(codes!, name);
            walk(c.concept);
          }
        };
        walk(cs.concept);
      }
    }
    for (const url of include.valueSet ?? []) {
      const imported = await this.valueSet(url, name, depth + 1, visiting);
      codes = codes ? new Map([...codes].filter(([k]) => imported.has(k))) : new Map(imported);
    }
    return codes ?? new Map();
  }

  /** The current stored resource with this canonical url (`url|version` pins the version), found through the url index. */
  private async load<T>(type: 'ValueSet' | 'CodeSystem', canonical: string): Promise<T | undefined> {
    const bar = canonical.lastIndexOf('|');
    const [url, version] = bar > 0 ? [canonical.slice(0, bar), canonical.slice(bar + 1)] : [canonical, undefined];
    const params = new SqlParams();
    const compiler = new SearchSqlCompiler(this.ctx, this.fhirBaseUrl, params);
    const rows: { content: T }[] = await this.runner.query(
      `SELECT r.content FROM resource r
        WHERE r.resource_type = ${params.bind(type)} AND NOT r.deleted AND ${compiler.access('r')}
          AND r.id IN (SELECT u.id FROM search_uri u WHERE u.resource_type = ${params.bind(type)} AND u.param = 'url' AND u.uri = ${params.bind(url)})
          ${version ? `AND r.content->>'version' = ${params.bind(version)}` : ''}
        ORDER BY r.last_updated DESC LIMIT 1`,
      params.values,
    );
    return rows[0]?.content;
  }
}
