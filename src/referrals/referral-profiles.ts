import type { Resource } from '@medplum/fhirtypes';

/** The referral profiles (fhir-profiles/hie-referral-*.json); a resource is part of a referral when it claims one. */
export const REFERRAL_TASK_PROFILE = 'http://hie.example.org/fhir/StructureDefinition/hie-referral-task';
export const REFERRAL_SERVICE_REQUEST_PROFILE = 'http://hie.example.org/fhir/StructureDefinition/hie-referral-servicerequest';

export function referralProfileOf(resourceType: string): string | undefined {
  if (resourceType === 'Task') return REFERRAL_TASK_PROFILE;
  if (resourceType === 'ServiceRequest') return REFERRAL_SERVICE_REQUEST_PROFILE;
  return undefined;
}

/** Whether the resource claims its type's referral profile (only such Tasks and ServiceRequests follow the referral rules). */
export function isReferral(resource: Resource | undefined): boolean {
  const profile = resource ? referralProfileOf(resource.resourceType) : undefined;
  return !!profile && (resource?.meta?.profile ?? []).includes(profile);
}

/** `Organization/{id}` -> id (undefined for any other reference). */
export function organizationIdOf(reference: string | undefined): string | undefined {
  const m = /^Organization\/([A-Za-z0-9\-.]{1,64})$/.exec(reference ?? '');
  return m?.[1];
}
