import { Injectable, OnModuleInit } from '@nestjs/common';
import { FhirError } from '../common/fhir-error';
import type { AccessContext } from '../fhir/pipeline/access-context';
import type { AccessFragment } from '../fhir/pipeline/access-predicate';
import type { Interaction, InteractionResult, ReadInteraction } from '../fhir/pipeline/interaction';
import type { Principal } from '../fhir/pipeline/principal';
import { ResourceTypeHandler, ResourceTypeHandlers } from '../fhir/pipeline/resource-type-handler';
import { AUDIT_EVENT_INCLUDES, AUDIT_EVENT_SEARCH_PARAMETERS, AuditEventSearch } from './audit-event.search';

/**
 * The column naming a stored AuditEvent's custodian: the organization that submitted it. Today the
 * row's `author_org` (AuditEvents are create-only for hospitals, so the first writer stays the
 * only one); the one place to change when the resource table gets its own custodian column.
 */
function custodianOf(alias: string): string {
  return `${alias}.author_org`;
}

/**
 * How AuditEvent is read and searched (docs/audit.md, "Who reads AuditEvents"): searches (type
 * level and `Patient/{id}/AuditEvent`) answer from the server's audit trail, auditors only (the
 * authorization stage refuses the rest); an auditor's read by id finds a trail record first. Stored
 * AuditEvents (submitted by hospitals' own systems, ATNA style) are read by their custodian
 * organization and by auditors, on every path (by id, history, system-level listings), and by no
 * one else, whatever a patient's Consent would allow of clinical data.
 */
@Injectable()
export class AuditEventHandler implements ResourceTypeHandler, OnModuleInit {
  readonly resourceType = 'AuditEvent';
  /** The trail answers its own parameters and includes, and no `_revinclude` (docs/audit.md). */
  readonly searchCapability = { parameters: AUDIT_EVENT_SEARCH_PARAMETERS, includes: AUDIT_EVENT_INCLUDES, revIncludes: [] };

  constructor(
    private readonly handlers: ResourceTypeHandlers,
    private readonly trail: AuditEventSearch,
  ) {}

  onModuleInit(): void {
    this.handlers.register(this);
  }

  async read(ctx: AccessContext, interaction: ReadInteraction): Promise<InteractionResult | undefined> {
    if (ctx.principal.role !== 'auditor') return undefined;
    return this.trail.read(interaction.id, ctx.principal.scopes);
  }

  search(ctx: AccessContext, interaction: Interaction): Promise<InteractionResult> {
    // `Patient/{id}/AuditEvent` is `AuditEvent?patient={id}` (R4 Patient CompartmentDefinition:
    // AuditEvent by `patient`); the trail knows no other compartment.
    if (interaction.kind === 'search-compartment' && interaction.compartment) {
      const { type, id } = interaction.compartment;
      if (type !== 'Patient') return Promise.reject(FhirError.notSupported(`AuditEvent is searched in the Patient compartment only, not ${type}`));
      const patient = interaction.query.patient;
      const query = { ...interaction.query, patient: [...(Array.isArray(patient) ? patient : patient !== undefined ? [patient] : []), id] };
      return this.trail.search({ ...interaction, query }, ctx.principal.scopes);
    }
    return this.trail.search(interaction, ctx.principal.scopes);
  }

  readRule(principal: Principal): AccessFragment {
    if (principal.kind === 'system' || principal.role === 'auditor') {
      return { basis: 'policy', description: `every stored AuditEvent (${principal.kind === 'system' ? 'system' : 'auditor'})`, render: () => 'TRUE' };
    }
    const organization = principal.role === 'hospital' ? principal.organization : undefined;
    if (!organization) return { basis: 'policy', description: 'none (custodians and auditors only)', render: () => 'FALSE' };
    return {
      basis: 'policy',
      description: 'its custodian organization only',
      render: (alias, bind) => `${custodianOf(alias)} = ${bind.bind(organization)}`,
    };
  }
}
