/** HIE roles (registration of a client); see docs/architecture.md. */
export type HieRole = 'hospital' | 'public-health' | 'auditor' | 'admin';

/**
 * Who is asking. Built by the authentication stage from a verified token; `anonymous` exists only
 * for the public endpoints (metadata) and is denied everything else.
 */
export interface Principal {
  /** `system`: internal work under a named system context (SystemAccess), never a request's principal. */
  kind: 'anonymous' | 'client' | 'system';
  clientId?: string;
  organization?: string;
  role?: HieRole;
  scopes: readonly string[];
  purposeOfUse?: string;
  /** `X-Break-Glass-Reason` of this request; required when purposeOfUse is ETREAT. */
  breakGlassReason?: string;
  /**
   * Token request `on_behalf_of`: the Practitioner, PractitionerRole or CareTeam (`Type/{id}`) the
   * organization's request is made for, as the organization declares it (docs/security.md).
   * Consent provisions naming individual actors are matched against it (docs/consent.md).
   */
  onBehalfOf?: readonly string[];
  /** Registration flag: a public-health client explicitly granted individual clinical reads. */
  clinicalAccess?: boolean;
}

export const ANONYMOUS: Principal = Object.freeze({ kind: 'anonymous', scopes: [] });
