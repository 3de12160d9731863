import { FhirError } from '../../common/fhir-error';
import { FhirDefinitions } from '../../fhir/definitions/fhir-definitions';
import { parseQueryString } from '../../fhir/pipeline/query-params';
import { parseSearchRequest } from '../../fhir/search/search-request';

/** R4 `Subscription.criteria`: `Type?query` (or a bare `Type`, every resource of it), checked as a strict search. */
export function parseCriteria(criteria: string | undefined): { resourceType: string; query: string } {
  const where = ['Subscription.criteria'];
  if (!criteria) throw new FhirError(422, 'required', 'Subscription.criteria is required', where);
  const q = criteria.indexOf('?');
  const resourceType = q < 0 ? criteria : criteria.slice(0, q);
  const query = q < 0 ? '' : criteria.slice(q + 1);
  if (!FhirDefinitions.get().isStorable(resourceType)) throw new FhirError(422, 'invalid', `Subscription.criteria names '${resourceType.slice(0, 64)}', not a resource type of this server`, where);
  if (resourceType === 'Subscription') throw new FhirError(422, 'not-supported', 'Subscription.criteria may not watch Subscriptions', where);
  try {
    const ast = parseSearchRequest([resourceType], parseQueryString(query), { strict: true });
    if (ast.include.length || ast.revinclude.length) throw FhirError.badRequest('_include and _revinclude do not apply to a notification');
  } catch (err) {
    if (err instanceof FhirError) throw new FhirError(422, 'invalid', `Subscription.criteria: ${err.issues[0]?.diagnostics ?? 'not a valid search'}`, where);
    throw err;
  }
  return { resourceType, query };
}
