import type { Interaction, InteractionResult } from './interaction';
import type { Principal } from './principal';

/**
 * The pluggable stages of the pipeline (GUIDE §1). Each is an abstract class so Nest can inject
 * the implementation a module provides; the FHIR module binds defaults, capability modules
 * (auth, consent, audit) override them.
 */
/** Rows an allowed interaction may still not see (SMART v2 scope queries): SQL over `r`, `$1..$n`. */
export interface AccessRestriction {
  predicate: string;
  params: unknown[];
}

export abstract class AuthorizationStage {
  /**
   * Throws a 401/403 FhirError when the principal may not perform the interaction; otherwise may
   * return a restriction that the pipeline AND-s into the AccessContext predicate.
   */
  abstract authorize(principal: Principal, interaction: Interaction): AccessRestriction | void;
}

export interface ConsentDecision {
  /** SQL predicate over the resource row alias `r`, `$1..$n` placeholders. */
  predicate: string;
  params: unknown[];
  /** Short description for the audit record (e.g. which Consent applied). */
  basis: string;
}

export abstract class ConsentStage {
  abstract decide(principal: Principal, interaction: Interaction): Promise<ConsentDecision>;
}

export interface AuditRecord {
  principal: Principal;
  interaction: Interaction;
  outcome: 'success' | 'failure';
  status: number;
  /** Resources the interaction touched, as `Type/id` (never their content). */
  entities: string[];
  durationMs: number;
  requestId?: string;
  consentBasis?: string;
  /**
   * A refused token request: the client id it claimed (unverified — the principal stays anonymous),
   * so auditors can see which registrations are being tried.
   */
  claimedClientId?: string;
}

export abstract class AuditStage {
  /** Must complete (durably, for real audit) before the response body is sent; failure fails the request. */
  abstract record(record: AuditRecord, result?: InteractionResult): Promise<void>;
}
