import { evalFhirPath } from '@medplum/core';
import type { Reference, Resource } from '@medplum/fhirtypes';
import { FhirDefinitions } from '../definitions/fhir-definitions';

/**
 * The Patient ids whose compartment (R4 Patient CompartmentDefinition) a resource belongs to.
 * Stored beside the resource so consent and `$everything` filter by an indexed array, not by JSON.
 */
export function patientCompartmentsOf(resource: Resource): string[] {
  const defs = FhirDefinitions.get();
  const ids = new Set<string>();
  if (resource.resourceType === 'Patient' && resource.id) ids.add(resource.id);
  const params = defs.searchParameters(resource.resourceType);
  for (const code of defs.patientCompartmentParams(resource.resourceType)) {
    const expression = params[code]?.expression;
    if (!expression) continue;
    for (const value of evalFhirPath(expression, resource)) {
      const id = patientIdOf(value as Reference);
      if (id) ids.add(id);
    }
  }
  return [...ids].sort();
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
