import { Injectable, OnModuleInit } from '@nestjs/common';
import type { ServiceRequest, Task } from '@medplum/fhirtypes';
import { FhirError } from '../common/fhir-error';
import type { Interaction } from '../fhir/pipeline/interaction';
import { WriteEvent, WriteEvents, WriteListener } from '../fhir/pipeline/write-events';
import { isReferral } from './referral-profiles';
import { REFERRAL_INITIAL_STATUS } from './referral-state-machine';
import { judgeServiceRequestChange, judgeTaskChange } from './referral-write-rules';

/**
 * The validate-phase half of the referral rules (after the write policy permitted the writer and
 * a given If-Match held): a referral is created only by `ServiceRequest/$refer`, its Task in
 * status requested; a change needs If-Match (412) and must be a transition of the state machine
 * with no other element changed (422 business-rule, naming the state and the party's transitions).
 */
@Injectable()
export class ReferralTransitionListener implements WriteListener, OnModuleInit {
  readonly name = 'referral-rules';
  readonly phase = 'validate' as const;
  readonly order = 100;
  readonly resourceTypes = ['Task', 'ServiceRequest'];
  readonly needsBeforeContent = true;

  constructor(private readonly events: WriteEvents) {}

  onModuleInit(): void {
    this.events.register(this);
  }

  async handle(e: WriteEvent): Promise<void> {
    const before = e.before?.resource;
    if (!before || !isReferral(before)) {
      if (!isReferral(e.after)) return;
      if (e.mode !== 'create' || !isRefer(e.interaction)) {
        throw new FhirError(422, 'business-rule', `a referral ${e.resourceType} is created only by POST ServiceRequest/$refer, together with its ${e.resourceType === 'Task' ? 'ServiceRequest' : 'Task'}`);
      }
      // draft: not yet sent, ready: no acceptance step; a referral starts by asking the owner.
      if (e.resourceType === 'Task' && (e.after as Task).status !== REFERRAL_INITIAL_STATUS) {
        throw new FhirError(422, 'business-rule', `a referral Task is created with status ${REFERRAL_INITIAL_STATUS}`, ['Task.status']);
      }
      return;
    }
    const ifMatch = hasIfMatch(e.interaction);
    const org = e.principal.organization;
    const judged =
      before.resourceType === 'Task'
        ? judgeTaskChange(before as Task, e.after as Task | undefined, org, ifMatch)
        : judgeServiceRequestChange(before as ServiceRequest, e.after as ServiceRequest | undefined, org, ifMatch);
    if (judged.verdict === 'permit') return;
    if (judged.verdict === 'precondition') throw FhirError.preconditionFailed(judged.message);
    if (judged.verdict === 'business-rule') throw new FhirError(422, 'business-rule', judged.message);
    throw FhirError.forbidden(judged.message);
  }
}

function isRefer(i: Interaction | undefined): boolean {
  return i?.kind === 'operation' && i.operation === 'refer';
}

function hasIfMatch(i: Interaction | undefined): boolean {
  return !!i && 'ifMatch' in i && i.ifMatch !== undefined;
}
