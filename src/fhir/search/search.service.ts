import { Inject, Injectable } from '@nestjs/common';
import type { Bundle, BundleEntry, BundleLink, Resource } from '@medplum/fhirtypes';
import type { EntityManager } from 'typeorm';
import { APP_CONFIG, AppConfig } from '../../config/app.config';
import { FhirError } from '../../common/fhir-error';
import { FhirDefinitions } from '../definitions/fhir-definitions';
import type { AccessContext } from '../pipeline/access-context';
import type { Interaction, InteractionResult } from '../pipeline/interaction';
import { parseQueryString } from '../pipeline/query-params';
import { subsetResource } from '../response/resource-subsetting';
import { searchParamsOf } from './search-parameter.registry';
import { SEARCH_LIMITS } from './search-limits';
import { CriteriaPrefilter } from './search-criteria.prefilter';
import { queryByKey, READERS_PER_STATEMENT } from '../storage/prepared-statement';
import { SearchIndexWriter } from './search-index.writer';
import { Clause, copySearchRequest, encodeCursor, IncludeSpec, parseSearchRequest, SearchRequestAst } from './search-request';
import { SearchSqlCompiler, SqlParams } from './search-sql.compiler';
import { expandSubsumptionClauses } from './search-subsumption.expander';
import { expandValueSetClauses } from './search-value-set.expander';
import { assertCursorValue, isIdWalkable, isWalkable, walkIdPage, walkSortedPage } from './search-sort-walk';

const MAX_INCLUDED = SEARCH_LIMITS.includedResources;
const MAX_ITERATE_DEPTH = SEARCH_LIMITS.iterateDepth;

interface Row {
  id: string;
  resource_type: string;
  content: Resource;
  compartments: string[];
  [sortKey: `s${number}`]: string | null;
}

/** A page's edge for its paging cursors: id and sort keys. */
type PageAnchor = Pick<Row, 'id' | `s${number}`>;

/** A candidate of `SearchService.matchCriteria`: a prepared search under its subscriber's access. */
export interface MatchCandidate {
  key: string;
  ctx: AccessContext;
  criteria: PreparedCriteria;
}

/** A stored version and the contexts to judge it for (`SearchService.readableVersions`). */
export interface VersionReaders {
  resourceType: string;
  id: string;
  versionId: number;
  contexts: readonly AccessContext[];
}

/** A search parsed once and matched many times (`SearchService.prepareCriteria`). */
export interface PreparedCriteria {
  resourceType: string;
  query: string;
  ast: SearchRequestAst;
  prefilter: CriteriaPrefilter;
}

/**
 * FHIR search: one SQL statement for the page of matches (keyset-paged), one per include level,
 * and a count only when `_total` asks for it. Every statement carries the AccessContext predicate.
 */
@Injectable()
export class SearchService {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly indexRows: SearchIndexWriter,
  ) {}

  async search(ctx: AccessContext, interaction: Interaction, tx: EntityManager): Promise<InteractionResult> {
    const types = this.typesOf(interaction);
    if (interaction.kind === 'search-system') {
      // A system search is the type-level searches of its `_type`s: each needs that type's search
      // right (`GET /fhir?_type=AuditEvent` is refused where `GET /fhir/AuditEvent` is).
      const refused = types.filter((t) => !ctx.mayRead(t));
      if (refused.length) throw new FhirError(403, 'forbidden', `This client may not search ${refused.join(', ')} (named in _type)`, ['_type']);
    }
    const ast = parseSearchRequest(types, interaction.query, {
      strict: interaction.preferHandling === 'strict',
      compartment: interaction.compartment,
    });
    this.assertReadable(ctx, ast);
    const runner = tx;
    await expandValueSetClauses(ast, ctx, this.config.fhirBaseUrl, runner);
    await expandSubsumptionClauses(ast, ctx, this.config.fhirBaseUrl, runner);

    const compiler = new SearchSqlCompiler(ctx, this.config.fhirBaseUrl, undefined, this.config.searchTextLanguage);
    const where = compiler.where(ast);
    const sorts = compiler.sortExpressions(ast);
    const keys = [...sorts, { expr: 'r.id', descending: false, cast: 'text' }];
    const backwards = ast.cursor?.direction === 'prev';
    // Sort keys computed by sub-selects (search parameters, not columns) are computed once per match
    // in a fenced sub-query (OFFSET 0), so the cursor condition and ORDER BY do not evaluate them again.
    const fenced = sorts.some((k) => !/^r\.\w+$/.test(k.expr));
    const keyRefs = fenced ? keys.map((k, i) => ({ ...k, expr: i < sorts.length ? `k.o${i}` : 'k.id' })) : keys;
    let cursor = '';
    if (ast.cursor) {
      const values = [...ast.cursor.values, ast.cursor.id];
      if (values.length !== keys.length) throw FhirError.badRequest('_cursor does not belong to this search', ['_cursor']);
      keys.forEach((k, i) => assertCursorValue(k.cast, values[i]));
      cursor = keysetCondition(keyRefs, values, backwards, compiler.params);
    }
    let rows: Row[] = [];
    let hasMore = false;
    /** The rows paging links are built from: the page's rows, or the walk's when the fetch left some out. */
    let anchors: PageAnchor[] | undefined;
    // One parameter sort key, or the id order of a chain or _has: walk in that order and stop after
    // the page (search-sort-walk.ts); undefined when the matches are too sparse for a walk.
    const paged = ast.count > 0 && ast.summary !== 'count';
    const page =
      paged && isWalkable(ast)
        ? await walkSortedPage(ctx, this.config.fhirBaseUrl, ast, ast.count + 1, runner)
        : paged && isIdWalkable(ast)
          ? await walkIdPage(ctx, this.config.fhirBaseUrl, ast, ast.count + 1, runner)
          : undefined;
    if (page) {
      // The content is fetched in a statement of its own, which sees changes committed since the
      // walk (READ COMMITTED): the search's whole WHERE, the access predicate included, is applied
      // again, so a row hidden (or changed to no longer match) in between is left out, never served.
      const fetcher = new SearchSqlCompiler(ctx, this.config.fhirBaseUrl, undefined, this.config.searchTextLanguage);
      const matches = fetcher.where(ast);
      const params = fetcher.params;
      rows = page.length
        ? await runner.query(
            `SELECT r.id, r.resource_type, r.content, r.compartments, p.o0 AS s0
              FROM unnest(${params.bind(page.map((w) => w.id))}::text[], ${params.bind(page.map((w) => w.o0))}::text[]) WITH ORDINALITY AS p(id, o0, n)
              JOIN resource r ON r.resource_type = ${params.bind(ast.resourceTypes[0])} AND r.id = p.id
              WHERE p.n <= ${params.bind(ast.count)} AND ${matches}
              ORDER BY p.n`,
            params.values,
          )
        : [];
      // Whether there is more is the walk's answer (it read count + 1), whatever the fetch left out.
      hasMore = page.length > ast.count;
      anchors = page.slice(0, ast.count).map((w) => ({ id: w.id, s0: w.o0 }));
      if (backwards) {
        rows.reverse();
        anchors.reverse();
      }
    } else if (ast.count > 0 && ast.summary !== 'count') {
      const dir = (k: { descending: boolean }): string => (k.descending !== backwards ? 'DESC' : 'ASC');
      // A resource without a value of a sort parameter (NULL key) sorts last in either direction.
      const nulls = (k: { nullable?: boolean }): string => (k.nullable ? (backwards ? ' NULLS FIRST' : ' NULLS LAST') : '');
      const order = keyRefs.map((k) => `${k.expr} ${dir(k)}${nulls(k)}`).join(', ');
      const limit = compiler.params.bind(ast.count + 1);
      const sortColumns = sorts.map((k, i) => `, ${k.expr} AS o${i}`).join('');
      const page = fenced
        ? `SELECT k.* FROM (SELECT r.resource_type, r.id${sortColumns} FROM resource r WHERE ${where} OFFSET 0) k
          ${cursor ? `WHERE ${cursor}` : ''} ORDER BY ${order} LIMIT ${limit}`
        : `SELECT r.resource_type, r.id${sortColumns} FROM resource r WHERE ${where}${cursor ? ` AND ${cursor}` : ''} ORDER BY ${order} LIMIT ${limit}`;
      // The page's ids and sort keys first (from indexes alone where possible), then the content of
      // those rows only: sorting or merging many matches never drags their bodies along.
      const outerOrder = keys.map((k, i) => `${i < sorts.length ? `p.o${i}` : 'p.id'} ${dir(k)}${nulls(k)}`).join(', ');
      const sql = `SELECT m.id, m.resource_type, m.content, m.compartments${sorts.map((_, i) => `, p.o${i}::text AS s${i}`).join('')}
        FROM (${page}) p
        JOIN resource m ON m.resource_type = p.resource_type AND m.id = p.id
        ORDER BY ${outerOrder}`;
      rows = await runner.query(sql, compiler.params.values);
      hasMore = rows.length > ast.count;
      rows = rows.slice(0, ast.count);
      if (backwards) rows.reverse();
    }
    // Without _total, the total is given when it is exact for free: a first page (no cursor: keyset
    // paging does not know how many rows came before) with no page after it (docs/search.md).
    const total =
      ast.total !== 'none' ? await this.total(ctx, ast, runner) : paged && !ast.cursor && !hasMore ? rows.length : undefined;
    const included = await this.includes(ctx, ast, rows, runner);
    const touched = [...rows, ...included].map((r) => ({
      reference: `${r.resource_type}/${r.id}`,
      versionId: r.content.meta?.versionId,
      patients: r.compartments ?? [],
    }));

    const entries: BundleEntry[] = rows.map((row) => ({
      fullUrl: `${this.config.fhirBaseUrl}/${row.resource_type}/${row.id}`,
      resource: this.shape(row.content, ast),
      search: { mode: 'match' },
    }));
    for (const r of included) {
      entries.push({ fullUrl: `${this.config.fhirBaseUrl}/${r.resource_type}/${r.id}`, resource: this.shape(r.content, ast), search: { mode: 'include' } });
    }
    if (ast.ignored.length) {
      entries.push({
        resource: {
          resourceType: 'OperationOutcome',
          issue: ast.ignored.map((name) => ({
            severity: 'warning',
            code: 'not-supported',
            diagnostics: `Search parameter '${name}' is unknown or unsupported and was ignored`,
            expression: [name],
          })),
        },
        search: { mode: 'outcome' },
      });
    }
    const bundle: Bundle = {
      resourceType: 'Bundle',
      type: 'searchset',
      ...(total !== undefined ? { total } : {}),
      link: this.links(interaction, ast, anchors ?? rows, sorts.length, hasMore, backwards),
      // FHIR JSON has no empty arrays (json.html): no matches, no `entry`.
      ...(entries.length ? { entry: entries } : {}),
    };
    return { status: 200, resource: bundle, touched };
  }

  /** Ids of current resources matching `criteria` (conditional operations), via the same compiler. */
  async matchIds(ctx: AccessContext, resourceType: string, criteria: string, tx: EntityManager): Promise<string[]> {
    const query = parseQueryString(criteria);
    const ast = parseSearchRequest([resourceType], query, { strict: true });
    if ([...ast.clauses.values()].every((c) => c.length === 0)) throw FhirError.badRequest(`Conditional criteria '${criteria.slice(0, 100)}' select nothing`);
    this.assertReadable(ctx, ast);
    await expandValueSetClauses(ast, ctx, this.config.fhirBaseUrl, tx);
    await expandSubsumptionClauses(ast, ctx, this.config.fhirBaseUrl, tx);
    const compiler = new SearchSqlCompiler(ctx, this.config.fhirBaseUrl, undefined, this.config.searchTextLanguage);
    const where = compiler.where(ast);
    const rows: { id: string }[] = await tx.query(`SELECT r.id FROM resource r WHERE ${where} LIMIT 1001`, compiler.params.values);
    return rows.map((r) => r.id);
  }

  /**
   * A search of `resourceType` parsed once for many later matches (a Subscription's
   * criteria, kept per node): strict parsing, and the clauses the in-memory prefilter decides.
   * Throws the parse's FhirError (400) for criteria that are not a valid search.
   */
  prepareCriteria(resourceType: string, query: string): PreparedCriteria {
    const ast = parseSearchRequest([resourceType], parseQueryString(query), { strict: true });
    return { resourceType, query, ast, prefilter: CriteriaPrefilter.of(ast, resourceType, this.config.fhirBaseUrl) };
  }

  /**
   * The candidates whose criteria the written version may satisfy: a candidate whose prefilter
   * rejects the index rows this write stored for `written` cannot match it under any access and
   * is left out, in memory (before a subscriber's access is even minted).
   */
  mayMatch<T extends { criteria: PreparedCriteria }>(written: Resource, candidates: readonly T[]): T[] {
    if (!candidates.some((c) => c.criteria.prefilter.decided)) return [...candidates];
    const rows = this.indexRows.rowsOf(written);
    return candidates.filter((c) => !c.criteria.prefilter.rejects(rows));
  }

  /**
   * Which of `candidates` (each a prepared search of the written type under its own AccessContext)
   * match the row `resourceType/id` as this transaction sees it (rest-hook Subscription matching,
   * docs/referrals.md): for criteria the in-memory prefilter cannot decide alone (chains, `_has`,
   * dates, modifiers, ...), in one statement, run in the write's transaction on the version it just
   * stored: per AccessContext one branch that selects the row under that access and tests each of
   * its candidates' criteria on it (a CASE per candidate), the branches joined by UNION ALL. A
   * candidate whose criteria no longer compile (a SearchParameter removed, a chain it may no longer
   * read) matches nothing. Answers the keys of the matches.
   */
  async matchCriteria(resourceType: string, id: string, candidates: readonly MatchCandidate[], tx: EntityManager): Promise<string[]> {
    const params = new SqlParams();
    const byAccess = new Map<AccessContext, string[]>();
    for (const c of candidates) {
      let criteria: string;
      try {
        const ast = copySearchRequest(c.criteria.ast);
        this.assertReadable(c.ctx, ast);
        await expandValueSetClauses(ast, c.ctx, this.config.fhirBaseUrl, tx);
        await expandSubsumptionClauses(ast, c.ctx, this.config.fhirBaseUrl, tx);
        criteria = new SearchSqlCompiler(c.ctx, this.config.fhirBaseUrl, params, this.config.searchTextLanguage).clauses(ast, resourceType);
      } catch (err) {
        if (err instanceof FhirError) continue;
        throw err;
      }
      const tests = byAccess.get(c.ctx) ?? [];
      tests.push(`(CASE WHEN ${criteria} THEN ${params.bind(c.key)}::text END)`);
      byAccess.set(c.ctx, tests);
    }
    if (!byAccess.size) return [];
    const branches = [...byAccess].map(
      ([ctx, tests]) =>
        `SELECT m.key FROM resource r CROSS JOIN LATERAL (VALUES ${tests.join(', ')}) AS m(key)
          WHERE r.resource_type = ${params.bind(resourceType)} AND r.id = ${params.bind(id)} AND NOT r.deleted
            AND ${new SearchSqlCompiler(ctx, this.config.fhirBaseUrl, params, this.config.searchTextLanguage).access('r')} AND m.key IS NOT NULL`,
    );
    const rows: { key: string }[] = await tx.query(branches.join('\n UNION ALL '), params.values);
    return rows.map((r) => r.key);
  }

  /**
   * For each of `versions` (a stored version and contexts), the contexts that may read that version,
   * in one statement for all of them (the rest-hook match job: the subscribers of many writes at
   * once). A version is judged on its own history row (its compartments, labels, custodian), as a
   * vread is; a context with a fragment that can judge current rows only (a SMART scope query reads
   * the index tables) is judged on the current row instead, and a deleted resource is readable by
   * none of those. One row per (version, context) pair, each pair evaluating its own context's
   * predicate only (`CASE` on the context's number). Its text depends only on the contexts'
   * predicate shapes, so it runs as a named prepared statement (`queryByKey`) with a forced generic
   * plan (a join by primary key has one plan whatever the values; PostgreSQL would otherwise keep
   * planning the consent predicates per call, docs/performance.md, issue 23). Run it in a
   * transaction: the plan setting is `SET LOCAL` and reset right after.
   */
  async readableVersions(versions: readonly VersionReaders[], tx: EntityManager): Promise<Set<AccessContext>[]> {
    const answer = versions.map(() => new Set<AccessContext>());
    const contexts = [...new Set(versions.flatMap((v) => v.contexts))];
    if (!contexts.length) return answer;
    if (contexts.length > READERS_PER_STATEMENT) {
      // A statement per group of readers: each plan holds its readers' predicates only.
      for (let from = 0; from < contexts.length; from += READERS_PER_STATEMENT) {
        const group = new Set(contexts.slice(from, from + READERS_PER_STATEMENT));
        const part = await this.readableVersions(versions.map((v) => ({ ...v, contexts: v.contexts.filter((ctx) => group.has(ctx)) })), tx);
        part.forEach((readers, i) => readers.forEach((ctx) => answer[i].add(ctx)));
      }
      return answer;
    }
    const number = new Map(contexts.map((ctx, i) => [ctx, i]));
    const types: string[] = [];
    const ids: string[] = [];
    const versionIds: number[] = [];
    const rowOf: number[] = [];
    const contextOf: number[] = [];
    versions.forEach((v, i) => {
      for (const ctx of new Set(v.contexts)) {
        types.push(v.resourceType);
        ids.push(v.id);
        versionIds.push(v.versionId);
        rowOf.push(i);
        contextOf.push(number.get(ctx)!);
      }
    });
    const p = new SqlParams();
    const keys = `unnest(${p.bind(types)}::text[], ${p.bind(ids)}::text[], ${p.bind(versionIds)}::int[], ${p.bind(rowOf)}::int[], ${p.bind(contextOf)}::int[]) AS k(resource_type, id, version_id, i, c)`;
    const versionRows = (ctx: AccessContext): boolean => ctx.readFragments.every((f) => !f.rows || f.rows.includes('version'));
    const currentOnly = contexts.some((ctx) => !versionRows(ctx));
    const cases = contexts.map((ctx, i) => `WHEN ${i} THEN ${versionRows(ctx) ? `(${ctx.renderRead('h', p, 'version')})` : `(r.id IS NOT NULL AND ${ctx.renderRead('r', p)})`}`);
    // LATERAL ... LIMIT 1 keeps it a primary-key probe per key: as a plain join, the generic plan
    // (which cannot know the array's length) may hash the whole history table instead.
    const text = `SELECT k.i, k.c, x.readable FROM ${keys}
       CROSS JOIN LATERAL (SELECT CASE k.c ${cases.join(' ')} END AS readable
          FROM resource_history h
          ${currentOnly ? 'LEFT JOIN resource r ON r.resource_type = h.resource_type AND r.id = h.id AND NOT r.deleted' : ''}
         WHERE h.resource_type = k.resource_type AND h.id = k.id AND h.version_id = k.version_id LIMIT 1) x`;
    await tx.query(`SET LOCAL plan_cache_mode = force_generic_plan`);
    const rows = await queryByKey<{ i: number; c: number; readable: boolean | null }>(tx, text, p.values);
    await tx.query(`RESET plan_cache_mode`);
    // NULL (an unknown term) reads as not readable, as in a WHERE clause.
    for (const row of rows) if (row.readable === true) answer[row.i].add(contexts[row.c]);
    return answer;
  }

  private typesOf(interaction: Interaction): string[] {
    if (interaction.kind !== 'search-system') {
      if (!interaction.resourceType) throw FhirError.badRequest('A type or compartment search needs a resource type');
      return [interaction.resourceType];
    }
    const raw = interaction.query._type;
    const list = (Array.isArray(raw) ? raw : raw ? [raw] : []).flatMap((v) => v.split(',')).filter(Boolean);
    if (!list.length) throw FhirError.badRequest('System search needs _type (one or more resource types)', ['_type']);
    for (const t of list) if (!FhirDefinitions.get().isStorable(t)) throw FhirError.badRequest(`Unknown resource type '${t}' in _type`, ['_type']);
    return list;
  }

  /** Chains and _has read other types: the principal must be allowed to read those too. */
  private assertReadable(ctx: AccessContext, ast: SearchRequestAst): void {
    const visit = (c: Clause): void => {
      if (c.kind === 'chain') {
        if (!ctx.mayRead(c.targetType)) throw FhirError.forbidden(`Chaining into ${c.targetType} is not allowed for this client`);
        visit(c.inner);
      } else if (c.kind === 'has') {
        if (!ctx.mayRead(c.sourceType)) throw FhirError.forbidden(`_has on ${c.sourceType} is not allowed for this client`);
        visit(c.inner);
      } else if (c.kind === 'untyped-chain') {
        // Target types the client may not read match nothing (as if absent); none readable is a 403.
        const readable = c.chains.filter((chain) => {
          try {
            visit(chain);
            return true;
          } catch (err) {
            if (err instanceof FhirError && err.status === 403) return false;
            throw err;
          }
        });
        if (!readable.length) throw FhirError.forbidden(`Chaining into ${c.chains.map((x) => x.targetType).join(', ')} is not allowed for this client`);
        c.chains = readable;
      }
    };
    for (const list of ast.clauses.values()) list.forEach(visit);
  }

  private async total(ctx: AccessContext, ast: SearchRequestAst, runner: EntityManager): Promise<number> {
    const compiler = new SearchSqlCompiler(ctx, this.config.fhirBaseUrl, new SqlParams(), this.config.searchTextLanguage);
    const { matches, access } = compiler.matchesAndAccess(ast);
    if (ast.total === 'estimate') {
      const [plan] = await runner.query(`EXPLAIN (FORMAT JSON) SELECT 1 FROM resource r WHERE ${matches} AND ${access}`, compiler.params.values);
      return Math.round(Number(plan['QUERY PLAN'][0].Plan['Plan Rows']));
    }
    // The access predicate as the aggregate's FILTER, not in WHERE: judged on each match after the
    // join (the same rows counted), so the planner can join the matches to the live rows by a merge
    // of two index-only scans instead of one probe of the table per match (docs/search.md, _total).
    const [{ n }] = await runner.query(`SELECT (count(*) FILTER (WHERE ${access}))::int AS n FROM resource r WHERE ${matches}`, compiler.params.values);
    return n;
  }

  /**
   * `_include` / `_revinclude` (search.html#include): one statement per level over the previous
   * level's ids, with the access predicate; `:iterate` repeats on what was included, up to 3 levels.
   */
  private async includes(ctx: AccessContext, ast: SearchRequestAst, matches: Row[], runner: EntityManager): Promise<Row[]> {
    if (!matches.length || (!ast.include.length && !ast.revinclude.length)) return [];
    const seen = new Set(matches.map((m) => `${m.resource_type}/${m.id}`));
    const out: Row[] = [];
    let frontier = matches.map((m) => ({ type: m.resource_type, id: m.id }));
    for (let depth = 0; depth < MAX_ITERATE_DEPTH && frontier.length && out.length < MAX_INCLUDED; depth++) {
      const include = ast.include.filter((s) => depth === 0 || s.iterate);
      const revinclude = ast.revinclude.filter((s) => depth === 0 || s.iterate);
      const params = new SqlParams();
      const compiler = new SearchSqlCompiler(ctx, this.config.fhirBaseUrl, params);
      const parts: string[] = [];
      for (const spec of include) {
        const ids = frontier.filter((f) => f.type === spec.sourceType).map((f) => f.id);
        if (!ids.length) continue;
        parts.push(`SELECT x.target_type, x.target_id FROM search_reference x
          WHERE x.resource_type = ${params.bind(spec.sourceType)} AND x.id = ANY(${params.bind(ids)}::text[])
          ${paramFilter(spec, params)} ${spec.targetType ? `AND x.target_type = ${params.bind(spec.targetType)}` : ''}`);
      }
      for (const spec of revinclude) {
        const byType = new Map<string, string[]>();
        for (const f of frontier) byType.set(f.type, [...(byType.get(f.type) ?? []), f.id]);
        for (const [targetType, ids] of byType) {
          if (spec.targetType && spec.targetType !== targetType) continue;
          parts.push(`SELECT x.resource_type, x.id FROM search_reference x
            WHERE x.resource_type = ${params.bind(spec.sourceType)} ${paramFilter(spec, params)}
              AND x.target_type = ${params.bind(targetType)} AND x.target_id = ANY(${params.bind(ids)}::text[])`);
        }
      }
      if (!parts.length) break;
      // One IN over a UNION: the planner looks up the few targets by key (an OR of INs scans the table).
      const rows: Row[] = await runner.query(
        `SELECT r.id, r.resource_type, r.content, r.compartments FROM resource r
          WHERE (r.resource_type, r.id) IN (${parts.join(' UNION ALL ')}) AND NOT r.deleted AND ${compiler.access('r')}
          ORDER BY r.resource_type, r.id LIMIT ${params.bind(MAX_INCLUDED - out.length)}`,
        params.values,
      );
      frontier = [];
      for (const row of rows) {
        const key = `${row.resource_type}/${row.id}`;
        // Included types the client may not read are left out, as if absent.
        if (seen.has(key) || !ctx.mayRead(row.resource_type)) continue;
        seen.add(key);
        out.push(row);
        frontier.push({ type: row.resource_type, id: row.id });
      }
    }
    return out;
  }

  private shape(resource: Resource, ast: SearchRequestAst): Resource {
    return ast.summary && ast.summary !== 'count' ? subsetResource(resource, ast.summary, ast.elements) : subsetResource(resource, undefined, ast.elements);
  }

  private links(interaction: Interaction, ast: SearchRequestAst, rows: PageAnchor[], sortCount: number, hasMore: boolean, backwards: boolean): BundleLink[] {
    const base = `${this.config.fhirBaseUrl}${interaction.path}`;
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries(interaction.query)) {
      if (k === '_cursor') continue;
      for (const one of Array.isArray(v) ? v : v !== undefined ? [v] : []) query.append(k, one);
    }
    const url = (cursor?: string): string => {
      const q = new URLSearchParams(query);
      if (cursor) q.set('_cursor', cursor);
      const s = q.toString();
      return s ? `${base}?${s}` : base;
    };
    const keysOf = (row: PageAnchor): (string | null)[] => Array.from({ length: sortCount }, (_, i) => row[`s${i}`] ?? null);
    const current = interaction.query._cursor;
    const links: BundleLink[] = [{ relation: 'self', url: url(typeof current === 'string' ? current : undefined) }];
    if (!rows.length) return links;
    const first = rows[0];
    const last = rows[rows.length - 1];
    const moreAhead = backwards ? true : hasMore;
    const moreBehind = backwards ? hasMore : ast.cursor !== undefined;
    if (moreAhead) links.push({ relation: 'next', url: url(encodeCursor('next', keysOf(last), last.id)) });
    if (moreBehind) links.push({ relation: 'previous', url: url(encodeCursor('prev', keysOf(first), first.id)) });
    return links;
  }
}

function paramFilter(spec: IncludeSpec, params: SqlParams): string {
  if (spec.param === '*') {
    const refs = [...searchParamsOf(spec.sourceType).values()].filter((d) => d.type === 'reference').map((d) => d.code);
    return `AND x.param = ANY(${params.bind(refs)}::text[])`;
  }
  return `AND x.param = ${params.bind(spec.param)}`;
}

/** Rows strictly after (or before) the cursor in the lexicographic order of the sort keys. */
function keysetCondition(
  keys: { expr: string; descending: boolean; cast: string; nullable?: boolean }[],
  values: (string | null)[],
  backwards: boolean,
  params: SqlParams,
): string {
  // Bound on first use: a placeholder the statement never uses has no type PostgreSQL could infer.
  const placeholders = new Map<number, string>();
  const at = (i: number): string => {
    if (!placeholders.has(i)) placeholders.set(i, `${params.bind(values[i])}::${keys[i].cast}`);
    return placeholders.get(i)!;
  };
  const ascending = keys.map((k) => k.descending === backwards);
  if (ascending.every((a) => a === ascending[0]) && !keys.some((k) => k.nullable)) {
    // One direction for every key: a row comparison, where an index on the keys (e.g. resource
    // (resource_type, last_updated, id)) starts the scan, so a deep page costs what page 1 does.
    return `((${keys.map((k) => k.expr).join(', ')}) ${ascending[0] ? '>' : '<'} (${keys.map((_, i) => at(i)).join(', ')}))`;
  }
  // NULL keys (no value) come last going forward, so first going backwards.
  const equal = (k: { expr: string }, i: number): string => (values[i] === null ? `${k.expr} IS NULL` : `${k.expr} = ${at(i)}`);
  const beyond = (k: { expr: string; descending: boolean; nullable?: boolean }, i: number): string => {
    const op = k.descending !== backwards ? '<' : '>';
    if (!k.nullable) return `${k.expr} ${op} ${at(i)}`;
    if (values[i] === null) return backwards ? `${k.expr} IS NOT NULL` : 'FALSE';
    return backwards ? `${k.expr} ${op} ${at(i)}` : `(${k.expr} ${op} ${at(i)} OR ${k.expr} IS NULL)`;
  };
  const alternatives = keys.map((k, i) => `(${[...keys.slice(0, i).map(equal), beyond(k, i)].join(' AND ')})`);
  return `(${alternatives.join(' OR ')})`;
}
