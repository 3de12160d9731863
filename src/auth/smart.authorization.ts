import { Injectable } from '@nestjs/common';
import { FhirError } from '../common/fhir-error';
import { Interaction, interactionVerb } from '../fhir/pipeline/interaction';
import { AuthorizationStage } from '../fhir/pipeline/pipeline.stages';
import type { HieRole, Principal } from '../fhir/pipeline/principal';
import { parseSmartScope, scopeAllows } from './smart-scope';

/** Resource types each non-clinical role may touch at all; everything else is denied to it. */
const ROLE_TYPES: Record<Exclude<HieRole, 'hospital'>, ReadonlySet<string>> = {
  auditor: new Set(['AuditEvent']),
  admin: new Set(['Organization']),
  'public-health': new Set(),
};
/** Verbs each non-clinical role may use on its types. */
const ROLE_VERBS: Record<Exclude<HieRole, 'hospital'>, string> = { auditor: 'rs', admin: 'cruds', 'public-health': 'rs' };
/**
 * Records of access: only auditors search them. A hospital may submit AuditEvents of its own
 * systems (IHE ATNA style) and work with them by id, but cannot discover others' by search.
 */
const AUDIT_TYPES = new Set(['AuditEvent']);

/**
 * Default deny: an interaction passes only when the client's role allows that kind of data AND a
 * granted SMART scope covers the type and verb. ETREAT (break-the-glass) also needs a reason.
 */
@Injectable()
export class SmartAuthorization extends AuthorizationStage {
  authorize(principal: Principal, interaction: Interaction): void {
    if (interaction.kind === 'capabilities') return;
    if (principal.kind !== 'client' || !principal.role) throw FhirError.unauthorized('A valid bearer token is required');
    if (principal.purposeOfUse === 'ETREAT' && !principal.breakGlassReason?.trim()) {
      throw FhirError.forbidden('Break-the-glass access (purpose ETREAT) needs a reason in the X-Break-Glass-Reason header');
    }
    if (interaction.kind === 'batch' || interaction.kind === 'transaction') {
      // Each entry is authorized on its own; the Bundle itself needs a role that may write records.
      if (principal.role !== 'hospital') throw this.denied(principal, 'submit batch or transaction Bundles');
      return;
    }
    const type = interaction.resourceType;
    const verb = interactionVerb(interaction.kind);
    if (!this.roleAllows(principal, type, verb)) {
      throw this.denied(principal, `${describe(verb)} ${type ?? 'across all types'}`);
    }
    const scopes = principal.scopes.map(parseSmartScope);
    if (!scopes.some((s) => s && scopeAllows(s, type, verb))) {
      throw new FhirError(403, 'forbidden', `No granted scope allows ${describe(verb)} ${type ?? 'across all types'} (system/${type ?? '*'}.${verb})`);
    }
  }

  private roleAllows(principal: Principal, type: string | undefined, verb: string): boolean {
    const role = principal.role!;
    if (role === 'hospital') return !type || !AUDIT_TYPES.has(type) || verb !== 's';
    if (role === 'public-health' && principal.clinicalAccess) return (verb === 'r' || verb === 's') && (!type || !AUDIT_TYPES.has(type));
    return !!type && ROLE_TYPES[role].has(type) && ROLE_VERBS[role].includes(verb);
  }

  private denied(principal: Principal, what: string): FhirError {
    return FhirError.forbidden(`The ${principal.role} role may not ${what}`);
  }
}

function describe(verb: string): string {
  return { c: 'create', r: 'read', u: 'update', d: 'delete', s: 'search', x: 'use' }[verb] ?? verb;
}
