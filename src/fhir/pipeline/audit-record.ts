import { RequestContext } from '../../common/request-context';
import type { AuditEntity, InteractionKind } from './interaction';
import type { Principal } from './principal';

/**
 * The one audit model (shaped after IHE BALP): every request that reaches the server produces
 * records of this type — each REST interaction and each Bundle entry, operations, token issuance
 * and refusal, admin API calls, authentication failures, rate-limit refusals and requests refused
 * before the pipeline (406, 413, 415, malformed query). The audit stage turns them into stored
 * AuditEvents (docs/audit.md) and a structured log line without PHI.
 */
export type AuditEventKind =
  | InteractionKind
  /** A token request at /oauth2/token (issued or refused). */
  | 'token'
  /** A request refused because its credentials were missing or invalid. */
  | 'authenticate'
  /** A request refused by the rate limit. */
  | 'rate-limit'
  /** An admin API call (client registrations). */
  | 'admin'
  /** A request refused before it could be parsed into an interaction (406, 413, 415, bad query). */
  | 'request'
  /** Internal work granted access across organizations (reindex, matching, statistics). */
  | 'system-access';

/** BALP action codes: create, read, update, delete, execute. */
export type AuditAction = 'C' | 'R' | 'U' | 'D' | 'E';

// Defined with the interaction vocabulary (an InteractionResult lists what it touched), below audit.
export type { AuditEntity } from './interaction';

export interface AuditRecord {
  kind: AuditEventKind;
  /** Sub-kind: the operation name, the admin action (`client-register`), … */
  subtype?: string;
  action: AuditAction;
  recorded: string;
  requestId?: string;
  principal: Principal;
  /** A refused token request: the client id it claimed (unverified, id-shaped only). */
  claimedClientId?: string;
  /** Source address of the request. */
  address?: string;
  resourceType?: string;
  /** Route path below the FHIR base (no query string: query values can be PHI). */
  path?: string;
  /**
   * The query of a search (its URL query string). PHI-bearing (names, identifiers, birth dates):
   * stored in the audit trail for auditors, never logged.
   */
  query?: string;
  /** Index of the entry within its Bundle, for the records of batch and transaction entries. */
  bundleEntry?: number;
  outcome: 'success' | 'failure';
  status: number;
  /** FHIR issue code of a failure (never its diagnostics, which can quote input). */
  failureCode?: string;
  entities: readonly AuditEntity[];
  /** Every patient whose data was read or written (union of the entities' patients, plus compartments searched). */
  patients: readonly string[];
  /** Why access was granted: the bases of the access fragments (scope, consent, policy, system) and their descriptions. */
  accessBasis: readonly string[];
  purposeOfUse?: string;
  /** Break-the-glass (purpose ETREAT): the reason the client gave. */
  breakGlassReason?: string;
  /** Name of the system context, for internal work. */
  system?: string;
  durationMs: number;
}

/** Action of an interaction kind (BALP: C/R/U/D/E). */
export function auditActionOf(kind: AuditEventKind): AuditAction {
  switch (kind) {
    case 'create':
      return 'C';
    case 'update':
    case 'patch':
      return 'U';
    case 'delete':
      return 'D';
    case 'read':
    case 'vread':
    case 'history-instance':
    case 'history-type':
    case 'history-system':
    case 'search-type':
    case 'search-system':
    case 'search-compartment':
    case 'capabilities':
      return 'R';
    default:
      return 'E';
  }
}

/** Patients of all entities, deduplicated and sorted. */
export function patientsOf(entities: readonly AuditEntity[], extra: readonly string[] = []): string[] {
  const ids = new Set(extra);
  for (const e of entities) for (const p of e.patients) ids.add(p);
  return [...ids].sort();
}

export interface AuditRecordInput extends Omit<AuditRecord, 'recorded' | 'action' | 'patients' | 'entities' | 'accessBasis' | 'purposeOfUse' | 'breakGlassReason'> {
  entities?: readonly AuditEntity[];
  accessBasis?: readonly string[];
  /** Patients touched besides the entities' (a compartment searched). */
  extraPatients?: readonly string[];
}

/** Builds a record, filling what follows from the rest (action, patients, purpose, break-glass reason). */
export function auditRecord(input: AuditRecordInput): AuditRecord {
  const { extraPatients, ...rest } = input;
  // The request now has its record; the error filter need not write one for it.
  RequestContext.markAudited();
  const entities = input.entities ?? [];
  return {
    ...rest,
    action: auditActionOf(input.kind),
    recorded: new Date().toISOString(),
    entities,
    patients: patientsOf(entities, extraPatients),
    accessBasis: input.accessBasis ?? [],
    purposeOfUse: input.principal.purposeOfUse,
    breakGlassReason: input.principal.purposeOfUse === 'ETREAT' ? input.principal.breakGlassReason : undefined,
  };
}
