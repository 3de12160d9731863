import { Injectable, OnModuleInit } from '@nestjs/common';
import type { AuditEvent, Bundle, Patient } from '@medplum/fhirtypes';
import type { StorageSession } from '../fhir/storage/storage-session';
import { FhirError } from '../common/fhir-error';
import { parseFhirDateRange } from '../common/fhir-date';
import type { AccessContext } from '../fhir/pipeline/access-context';
import type { InteractionResult, OperationInteraction } from '../fhir/pipeline/interaction';
import { FhirOperation } from '../fhir/operations/fhir-operation';
import { shippedOperationDefinition } from '../fhir/operations/operation-definitions';
import type { OperationInput } from '../fhir/operations/operation-parameters';
import { OperationRegistry } from '../fhir/operations/operation.registry';
import { ResourceRepository } from '../fhir/storage/resource.repository';
import { AuditTrailRepository } from './audit-trail.repository';

/** Most events one report lists; narrow `_since` for more. */
export const ACCESS_REPORT_MAX = 10_000;

/**
 * `GET /fhir/Patient/{id}/$access-report?_since=…` — the accounting of disclosures: every audit
 * record naming the patient (who, which resources, when, purpose, allowed or denied,
 * break-the-glass), as a `collection` Bundle of AuditEvents, oldest first. Auditors, and hospital
 * clients of the patient's own organization (`Patient.managingOrganization`, read through their
 * own AccessContext).
 */
@Injectable()
export class AccessReportOperation extends FhirOperation implements OnModuleInit {
  readonly name = 'access-report';
  readonly definition = shippedOperationDefinition('access-report');
  readonly levels = ['instance'] as const;
  override readonly resourceTypes = ['Patient'];
  readonly affectsState = false;
  readonly roles = ['auditor', 'hospital'] as const;

  constructor(
    private readonly operations: OperationRegistry,
    private readonly trail: AuditTrailRepository,
    private readonly resources: ResourceRepository,
  ) {
    super();
  }

  onModuleInit(): void {
    this.operations.register(this);
  }

  async execute(ctx: AccessContext, i: OperationInteraction, { tx }: StorageSession, input: OperationInput): Promise<InteractionResult> {
    const patientId = i.id!;
    const sinceText = input.text('_since');
    // The parser checked it is a dateTime; its range's start is where the report begins.
    const since = sinceText === undefined ? undefined : parseFhirDateRange(sinceText)!.start;
    if (ctx.principal.role !== 'auditor') {
      // A hospital sees the report of its own patients only.
      const current = await this.resources.readCurrent(ctx, 'Patient', patientId, tx);
      const managing = (current?.resource as Patient | undefined)?.managingOrganization?.reference;
      if (!current || current.deleted || !ctx.principal.organization || managing !== `Organization/${ctx.principal.organization}`) {
        throw FhirError.forbidden(`The access report of Patient/${patientId} is for auditors and the patient's own organization`);
      }
    }
    const events: AuditEvent[] = await this.trail.forPatient(patientId, since, ACCESS_REPORT_MAX + 1);
    if (events.length > ACCESS_REPORT_MAX) throw new FhirError(400, 'too-costly', `More than ${ACCESS_REPORT_MAX} access records; narrow _since`, ['_since']);
    const bundle: Bundle = { resourceType: 'Bundle', type: 'collection', ...(events.length ? { entry: events.map((resource) => ({ resource })) } : {}) };
    return { status: 200, resource: bundle, touched: [{ reference: `Patient/${patientId}`, patients: [patientId] }] };
  }
}
