import { FhirError } from '../common/fhir-error';
import type { AccessFragment, SqlBinder } from '../fhir/pipeline/access-predicate';
import { Clause, parseSearchRequest } from '../fhir/search/search-request';
import { SearchSqlCompiler, SqlParams } from '../fhir/search/search-sql.compiler';
import type { SmartScope } from './smart-scope';

/**
 * The `?param=value` part of a SMART v2 scope (`system/Observation.rs?category=laboratory`) as
 * search clauses on its type. Only plain search parameters: no chains, `_has` or result
 * parameters, so the restriction is a predicate on the resource itself.
 */
export function restrictionClauses(scope: SmartScope): Clause[] {
  const query: Record<string, string[]> = {};
  for (const [name, value] of scope.restrictions) {
    if (name.includes('.') || name.startsWith('_has')) throw FhirError.badRequest(`scope ${scope.raw}: '${name}' chains; only plain search parameters may restrict a scope`, ['scopes']);
    (query[name] ??= []).push(value);
  }
  // parseSearchRequest has an entry for every type it is given.
  const clauses = parseSearchRequest([scope.resourceType], query, { strict: true }).clauses.get(scope.resourceType)!;
  // Full text and code sets need a per-request step before compiling (and are no scope of data).
  const unsupported = clauses.find((c) => c.kind === 'param' && (c.def.fullText || ['in', 'not-in', 'above', 'below'].includes(c.modifier ?? '')));
  if (unsupported?.kind === 'param') {
    throw FhirError.badRequest(`scope ${scope.raw}: ${unsupported.def.code}${unsupported.modifier ? `:${unsupported.modifier}` : ''} cannot restrict a scope`, ['scopes']);
  }
  if (clauses.length !== scope.restrictions.length) {
    throw FhirError.badRequest(`scope ${scope.raw}: only search parameters of ${scope.resourceType} may restrict a scope`, ['scopes']);
  }
  return clauses;
}

/**
 * One access fragment that admits, for every type in `restricted`, only resources matching at least
 * one of its scopes' restrictions, and leaves other types alone. It joins the AccessContext, so
 * reads, searches, includes, chains and `_has` all see the same subset, evaluated on the search
 * index tables (current versions only: restricted scopes allow no history or vread).
 */
export function scopeRestrictionFragment(restricted: Map<string, SmartScope[]>, fhirBaseUrl: string): AccessFragment | undefined {
  if (!restricted.size) return undefined;
  // Parsed once: a bad scope fails when the token is used, not inside SQL rendering.
  const perType = [...restricted].map(([type, scopes]) => ({ type, alternatives: scopes.map((s) => restrictionClauses(s)) }));
  const raw = [...restricted.values()].flat().map((s) => s.raw);
  return {
    basis: 'scope',
    description: `scope ${raw.join(' ').slice(0, 200)}`,
    rows: ['current'],
    render(alias: string, bind: SqlBinder): string {
      // Plain parameter clauses never chain, so the compiler needs no access context of its own.
      const compiler = new SearchSqlCompiler(undefined, fhirBaseUrl, new SqlParams(bind));
      return perType
        .map(({ type, alternatives }) => {
          const any = alternatives.map((clauses) => `(${clauses.map((c) => compiler.clause(c, alias)).join(' AND ')})`);
          return `(${alias}.resource_type <> ${bind.bind(type)} OR ${any.join(' OR ')})`;
        })
        .join(' AND ');
    },
  };
}
