import type { ServiceRequest, Task } from '@medplum/fhirtypes';
import { isReferral, organizationIdOf, REFERRAL_SERVICE_REQUEST_PROFILE, REFERRAL_TASK_PROFILE } from './referral-profiles';
import { allowedTransitions, isFinal, judgeTransition, ReferralParty, TaskStatus } from './referral-state-machine';

/*
 * Who may change a stored referral and how (docs/referrals.md), as pure functions of the stored
 * version, the proposed one and the writer's organization, so the write policy (403) and the
 * validate listener (412, 422) judge each write the same way.
 */

/**
 * - `permit`: the change is this party's to make;
 * - `forbidden` (403): the writer is not a party, or the change is the other party's;
 * - `business-rule` (422): the party's kind of change, but not allowed here (state, other fields);
 * - `precondition` (412): a change without If-Match.
 */
export type ReferralJudgement =
  | { verdict: 'permit'; reason: string }
  | { verdict: 'forbidden' | 'business-rule' | 'precondition'; message: string };

/** Task elements each party may change (with status, by its transitions); the rest is fixed at creation. */
const EDITABLE: Record<ReferralParty, readonly string[]> = {
  owner: ['status', 'businessStatus', 'statusReason', 'executionPeriod', 'output', 'lastModified'],
  requester: ['status', 'note', 'lastModified'],
};
/** ServiceRequest: the requester may edit its note; the workflow state is on the Task. */
const SERVICE_REQUEST_EDITABLE: readonly string[] = ['note'];
/** Elements a write never compares (set by the server on each version). */
const SERVER_SET = new Set(['id', 'meta', 'text']);

/** The party a writer's organization is in a referral resource (requester first: a self-referral is the requester's). */
export function partyOf(organization: string | undefined, requester: string | undefined, owner: string | undefined): ReferralParty | undefined {
  if (!organization) return undefined;
  if (organizationIdOf(requester) === organization) return 'requester';
  if (organizationIdOf(owner) === organization) return 'owner';
  return undefined;
}

/** "Task/1 is accepted; the owner may make: in-progress" (ids and codes only). */
export function stateLine(task: Task, party: ReferralParty | undefined): string {
  const status = task.status as TaskStatus;
  const next = party ? allowedTransitions(status, party) : [];
  const who = party ? `the ${party} (Organization/${party === 'owner' ? organizationIdOf(task.owner?.reference) : organizationIdOf(task.requester?.reference)})` : 'this organization';
  return `Task/${task.id} is ${status}; ${who} may make: ${next.length ? next.join(', ') : 'no transition'}`;
}

/** The top-level elements that differ between two versions, server-set ones aside. */
export function changedElements(before: object, after: object): string[] {
  const keys = new Set([...Object.keys(before), ...Object.keys(after)]);
  const b = before as Record<string, unknown>;
  const a = after as Record<string, unknown>;
  return [...keys].filter((k) => !SERVER_SET.has(k) && JSON.stringify(b[k]) !== JSON.stringify(a[k])).sort();
}

/**
 * A change of a stored referral Task by a writer of `organization`: `after` undefined is a delete;
 * `ifMatch` whether the write carries If-Match.
 */
export function judgeTaskChange(before: Task, after: Task | undefined, organization: string | undefined, ifMatch: boolean): ReferralJudgement {
  const party = partyOf(organization, before.requester?.reference, before.owner?.reference);
  if (!party) return { verdict: 'forbidden', message: `Organization/${organization ?? '-'} is not a party to this referral: ${stateLine(before, undefined)}` };
  if (!after) return { verdict: 'forbidden', message: `a referral is not deleted; the requester cancels it. ${stateLine(before, party)}` };
  // Dropping the profile claim would take the Task out of these rules (meta is otherwise not compared).
  if (!isReferral(after)) return { verdict: 'business-rule', message: `Task.meta.profile must keep ${REFERRAL_TASK_PROFILE}. ${stateLine(before, party)}` };
  const changed = changedElements(before, after);
  const other: ReferralParty = party === 'owner' ? 'requester' : 'owner';
  const notMine = changed.filter((k) => !EDITABLE[party].includes(k));
  const others = notMine.filter((k) => EDITABLE[other].includes(k));
  if (others.length) return { verdict: 'forbidden', message: `Task.${others[0]} is the ${other}'s to change. ${stateLine(before, party)}` };
  if (notMine.length) return { verdict: 'business-rule', message: `Task.${notMine[0]} cannot change after the referral is created. ${stateLine(before, party)}` };
  const from = before.status as TaskStatus;
  const to = after.status as TaskStatus;
  if (from !== to) {
    const judged = judgeTransition(from, to, party);
    if (!judged.allowed) {
      const verdict = judged.refusal === 'wrong-party' ? 'forbidden' : 'business-rule';
      return { verdict, message: `${from} -> ${to} is not a transition the ${party} may make. ${stateLine(before, party)}` };
    }
  }
  if (!changed.length) return { verdict: 'permit', reason: `Task/${before.id} unchanged by the ${party}` };
  // A closed referral changes only by a transition (entered-in-error): its last version dates the
  // end of the referral-scoped access window (referral-access.ts), which nobody may push back.
  if (from === to && isFinal(from)) return { verdict: 'business-rule', message: `the referral is closed; only its status may change. ${stateLine(before, party)}` };
  // Every change of a referral is made against the version the writer saw (lost updates are silent otherwise).
  if (!ifMatch) return { verdict: 'precondition', message: `a change of a referral needs If-Match with the version it changes. ${stateLine(before, party)}` };
  const what = from !== to ? `${from} -> ${to}` : changed.join(', ');
  return { verdict: 'permit', reason: `Task/${before.id} ${what} by the ${party} Organization/${organization}` };
}

/** A change of a stored referral ServiceRequest: only its requester, only its note. */
export function judgeServiceRequestChange(before: ServiceRequest, after: ServiceRequest | undefined, organization: string | undefined, ifMatch: boolean): ReferralJudgement {
  const line = `ServiceRequest/${before.id} is ${before.status}; the requester may change its note, the workflow is on its Task`;
  const party = partyOf(organization, before.requester?.reference, before.performer?.[0]?.reference);
  if (party !== 'requester') return { verdict: 'forbidden', message: `only the requester changes a referral's ServiceRequest. ${line}` };
  if (!after) return { verdict: 'forbidden', message: `a referral is not deleted; the requester cancels its Task. ${line}` };
  if (!isReferral(after)) return { verdict: 'business-rule', message: `ServiceRequest.meta.profile must keep ${REFERRAL_SERVICE_REQUEST_PROFILE}. ${line}` };
  const fixed = changedElements(before, after).filter((k) => !SERVICE_REQUEST_EDITABLE.includes(k));
  if (fixed.length) return { verdict: 'business-rule', message: `ServiceRequest.${fixed[0]} cannot change after the referral is created. ${line}` };
  if (!ifMatch && changedElements(before, after).length) return { verdict: 'precondition', message: `a change of a referral needs If-Match with the version it changes. ${line}` };
  return { verdict: 'permit', reason: `ServiceRequest/${before.id} note by the requester Organization/${organization}` };
}
