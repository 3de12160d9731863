import { evalFhirPath } from '@medplum/core';
import type { Reference, Resource } from '@medplum/fhirtypes';
import { FhirDefinitions } from '../definitions/fhir-definitions';
import { branchesForType } from '../definitions/fhirpath-branches';
import { fhirPathCache } from '../definitions/fhirpath-cache';

/**
 * The Patient ids whose compartment (R4 Patient CompartmentDefinition) a resource belongs to.
 * Stored beside the resource so consent and `$everything` filter by an indexed array, not by JSON.
 */
export function patientCompartmentsOf(resource: Resource): string[] {
  const ids = new Set<string>();
  if (resource.resourceType === 'Patient' && resource.id) ids.add(resource.id);
  for (const expression of compartmentExpressions(resource.resourceType)) {
    for (const value of evalFhirPath(expression, resource, {}, fhirPathCache)) {
      const id = patientIdOf(value as Reference);
      if (id) ids.add(id);
    }
  }
  return [...ids].sort();
}

const expressionsByType = new Map<string, string[]>();

/**
 * The expressions of the type's Patient compartment parameters, each narrowed to this type's
 * branches: a shared parameter such as `patient` unites paths of 32 types
 * (`AllergyIntolerance.patient | CarePlan.subject… | …`) and evaluating all of them for every
 * write is most of the cost. Memoized per type (a function of the definitions).
 */
function compartmentExpressions(resourceType: string): string[] {
  let expressions = expressionsByType.get(resourceType);
  if (!expressions) {
    const defs = FhirDefinitions.get();
    const params = defs.searchParameters(resourceType);
    expressions = defs
      .patientCompartmentParams(resourceType)
      .map((code) => params[code]?.expression)
      .filter((e): e is string => !!e)
      .map((e) => branchesForType(e, resourceType));
    expressionsByType.set(resourceType, expressions);
  }
  return expressions;
}

function patientIdOf(ref: Reference | undefined): string | undefined {
  const s = ref?.reference;
  if (typeof s !== 'string') return undefined;
  const m = /(?:^|\/)Patient\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[^/]+)?$/.exec(s);
  return m?.[1];
}

/** meta.security codings as `system|code`, the form consent rules match on. */
export function securityLabelsOf(resource: Resource): string[] {
  return (resource.meta?.security ?? []).map((c) => `${c.system ?? ''}|${c.code ?? ''}`).sort();
}
