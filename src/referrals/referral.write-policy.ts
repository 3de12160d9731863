import { Injectable, OnModuleInit } from '@nestjs/common';
import type { ServiceRequest, Task } from '@medplum/fhirtypes';
import type { WriteVerdict } from '../fhir/pipeline/write-decision';
import { WritePolicies, WritePolicy, WriteProposal } from '../fhir/pipeline/write-policy';
import { isReferral } from './referral-profiles';
import { judgeServiceRequestChange, judgeTaskChange } from './referral-write-rules';

/**
 * Who may change a stored referral (docs/referrals.md): its parties only, each its own part (the
 * owner its transitions and output, the requester cancellation and notes); nobody deletes one.
 * Denies (403, naming the state and the party's transitions) the writes of a non-party and a
 * party's change that is the other party's; permits the rest, which the validate listener
 * (`ReferralTransitionListener`) then judges for If-Match (412) and the state machine (422). Creates are
 * not judged here: the default makes the creator the custodian, the listener allows referrals
 * only through $refer.
 */
@Injectable()
export class ReferralWritePolicy implements WritePolicy, OnModuleInit {
  readonly name = 'referral';
  readonly resourceTypes = ['Task', 'ServiceRequest'];

  constructor(private readonly policies: WritePolicies) {}

  onModuleInit(): void {
    this.policies.register(this);
  }

  decide(p: WriteProposal): WriteVerdict | undefined {
    const before = p.before?.resource;
    if (p.mode === 'create' || !before || !isReferral(before)) return undefined;
    const org = p.principal.organization;
    // If-Match is the listener's to check (after the row lock's version comparison).
    const judged =
      before.resourceType === 'Task'
        ? judgeTaskChange(before as Task, p.after as Task | undefined, org, true)
        : judgeServiceRequestChange(before as ServiceRequest, p.after as ServiceRequest | undefined, org, true);
    if (judged.verdict === 'forbidden') return { permit: false, reason: judged.message };
    if (judged.verdict === 'permit') return { permit: true, reason: judged.reason };
    return { permit: true, reason: `a party's change of ${p.resourceType}/${p.id}, checked by the referral rules` };
  }
}
