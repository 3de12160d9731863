import { FhirError } from '../common/fhir-error';
import type { AccessContext } from '../fhir/pipeline/access-context';
import type { AccessRestriction } from '../fhir/pipeline/pipeline.stages';
import { Clause, parseSearchRequest } from '../fhir/search/search-request';
import { SearchSqlCompiler } from '../fhir/search/search-sql.compiler';
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
  const clauses = parseSearchRequest([scope.resourceType], query, { strict: true }).clauses.get(scope.resourceType) ?? [];
  if (clauses.length !== scope.restrictions.length) {
    throw FhirError.badRequest(`scope ${scope.raw}: only search parameters of ${scope.resourceType} may restrict a scope`, ['scopes']);
  }
  return clauses;
}

/**
 * One SQL predicate over the resource row `r` (placeholders from $1) that admits, for every type in
 * `restricted`, only resources matching at least one of its scopes' restrictions, and leaves other
 * types alone. It joins the AccessContext predicate, so reads, searches, includes, chains and
 * `_has` all see the same subset, evaluated on the search index tables.
 */
export function compileScopeRestrictions(restricted: Map<string, SmartScope[]>, fhirBaseUrl: string): AccessRestriction | undefined {
  if (!restricted.size) return undefined;
  // Plain parameter clauses never consult the compiler's access context (only chains and _has do).
  const compiler = new SearchSqlCompiler(undefined as unknown as AccessContext, fhirBaseUrl);
  const perType = [...restricted].map(([type, scopes]) => {
    const alternatives = scopes.map((s) => `(${restrictionClauses(s).map((c) => compiler.clause(c, 'r')).join(' AND ')})`);
    return `(r.resource_type <> ${compiler.params.bind(type)} OR ${alternatives.join(' OR ')})`;
  });
  return { predicate: perType.join(' AND '), params: compiler.params.values };
}
