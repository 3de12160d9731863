import { randomUUID } from 'node:crypto';
import { Injectable, OnModuleInit } from '@nestjs/common';
import type { Parameters, ServiceRequest, Task } from '@medplum/fhirtypes';
import { FhirError } from '../common/fhir-error';
import { FhirOperation } from '../fhir/operations/fhir-operation';
import { shippedOperationDefinition } from '../fhir/operations/operation-definitions';
import type { OperationInput } from '../fhir/operations/operation-parameters';
import { OperationRegistry } from '../fhir/operations/operation.registry';
import type { AccessContext } from '../fhir/pipeline/access-context';
import type { InteractionResult, OperationInteraction } from '../fhir/pipeline/interaction';
import { ResourceRepository, StoredVersion, versionWrite } from '../fhir/storage/resource.repository';
import type { StorageSession } from '../fhir/storage/storage-session';
import { ResourceValidator } from '../fhir/validation/resource.validator';
import { organizationIdOf, REFERRAL_SERVICE_REQUEST_PROFILE, REFERRAL_TASK_PROFILE } from './referral-profiles';
import { REFERRAL_INITIAL_STATUS } from './referral-state-machine';

/**
 * `POST /fhir/ServiceRequest/$refer` (docs/referrals.md): creates a referral — the given
 * ServiceRequest and its Task, derived from it — in the interaction's transaction, so both or
 * neither are stored. Each is an ordinary create (validated against its referral profile, judged
 * by the write policies and the validate listeners, indexed, its custodian the caller's
 * organization); the operation is audited once, naming both.
 */
@Injectable()
export class ReferOperation extends FhirOperation implements OnModuleInit {
  readonly name = 'refer';
  readonly definition = shippedOperationDefinition('refer');
  readonly levels = ['type'] as const;
  override readonly resourceTypes = ['ServiceRequest'];
  readonly affectsState = true;
  readonly roles = ['hospital'] as const;
  override readonly scopes = ['ServiceRequest.c', 'Task.c'];

  constructor(
    private readonly operations: OperationRegistry,
    private readonly repository: ResourceRepository,
    private readonly validator: ResourceValidator,
  ) {
    super();
  }

  onModuleInit(): void {
    this.operations.register(this);
  }

  async execute(ctx: AccessContext, i: OperationInteraction, { tx }: StorageSession, input: OperationInput): Promise<InteractionResult> {
    const given = input.resource('serviceRequest') as ServiceRequest;
    const organization = ctx.principal.organization;
    if (!organization || organizationIdOf(given.requester?.reference) !== organization) {
      throw new FhirError(422, 'business-rule', `serviceRequest.requester must be the caller's own organization (Organization/${organization ?? '-'})`, ['serviceRequest.requester']);
    }
    // draft would hand the receiver an order not yet made; a referral is sent when it is active.
    if (given.status !== undefined && given.status !== 'active') {
      throw new FhirError(422, 'business-rule', `serviceRequest.status ${String(given.status).slice(0, 32)} is refused: a referral is created active (draft ones stay in the sender's own system)`, ['serviceRequest.status']);
    }
    const owner = organizationIdOf(given.performer?.[0]?.reference);
    // A self-referral would make one organization both parties: its transitions would be nobody's.
    if (owner === organization) {
      throw new FhirError(422, 'business-rule', `serviceRequest.performer must be another organization than the requester (Organization/${organization})`, ['serviceRequest.performer']);
    }
    if (owner) {
      const performer = await this.repository.readCurrent(ctx, 'Organization', owner, tx);
      if (!performer || performer.deleted) throw new FhirError(422, 'not-found', `serviceRequest.performer: there is no Organization/${owner}`, ['serviceRequest.performer']);
    }

    const now = new Date().toISOString();
    const serviceRequestId = randomUUID();
    const taskId = randomUUID();
    const serviceRequest = {
      ...given,
      id: serviceRequestId,
      meta: { ...given.meta, profile: withProfile(given.meta?.profile, REFERRAL_SERVICE_REQUEST_PROFILE) },
      status: 'active',
      authoredOn: given.authoredOn ?? now,
    } as ServiceRequest;
    const note = input.text('note');
    const task: Task = {
      resourceType: 'Task',
      id: taskId,
      // The Task says who is referred where for what: it carries the request's security labels.
      meta: { profile: [REFERRAL_TASK_PROFILE], ...(given.meta?.security?.length ? { security: given.meta.security } : {}) },
      status: REFERRAL_INITIAL_STATUS,
      intent: 'order',
      ...(serviceRequest.priority ? { priority: serviceRequest.priority } : {}),
      focus: { reference: `ServiceRequest/${serviceRequestId}` },
      for: serviceRequest.subject,
      requester: serviceRequest.requester,
      owner: serviceRequest.performer?.[0],
      authoredOn: now,
      lastModified: now,
      ...(note !== undefined ? { note: [{ text: note, time: now, authorReference: { reference: `Organization/${organization}` } }] } : {}),
    };
    this.validator.validate(serviceRequest);
    this.validator.validate(task);
    const writes = [
      await this.repository.write(ctx, versionWrite(ctx, 'create', 'POST', serviceRequest, serviceRequestId), tx),
      await this.repository.write(ctx, versionWrite(ctx, 'create', 'POST', task, taskId), tx),
    ];
    const written = writes.map((w) => {
      if (!w.version) throw new Error('A create stored no version');
      return w.version;
    });
    const parameters: Parameters = {
      resourceType: 'Parameters',
      parameter: [
        { name: 'serviceRequest', resource: written[0].resource },
        { name: 'task', resource: written[1].resource },
      ],
    };
    // Both creates are decided alike (the caller becomes custodian); the record carries that line.
    return { status: 200, resource: parameters, touched: written.map(entityOf), writeDecision: writes[1].decision };
  }
}

function withProfile(profiles: string[] | undefined, profile: string): string[] {
  return [...new Set([...(profiles ?? []), profile])];
}

function entityOf(v: StoredVersion): { reference: string; versionId: string; patients: string[] } {
  return { reference: `${v.resourceType}/${v.id}`, versionId: String(v.versionId), patients: v.compartments };
}
