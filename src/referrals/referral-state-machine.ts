/*
 * The referral Task's state machine (R4 Task statuses, task.html#statemachine, narrowed as HL7
 * BSeR and 360X close the loop): pure, no I/O, so the write policy and the validate listener
 * judge every write the same way (docs/referrals.md).
 */

export type TaskStatus =
  | 'draft'
  | 'requested'
  | 'received'
  | 'accepted'
  | 'rejected'
  | 'ready'
  | 'cancelled'
  | 'in-progress'
  | 'on-hold'
  | 'failed'
  | 'completed'
  | 'entered-in-error';

/** The two parties of a referral: the requester organization (A) and the Task's owner (B). */
export type ReferralParty = 'requester' | 'owner';

/** The only status a referral is created in (draft and ready are refused: docs/referrals.md). */
export const REFERRAL_INITIAL_STATUS: TaskStatus = 'requested';

/** The owner's transitions: it answers the request, does the work and closes the loop. */
const OWNER_TRANSITIONS: Readonly<Partial<Record<TaskStatus, readonly TaskStatus[]>>> = {
  requested: ['received', 'accepted', 'rejected'],
  received: ['accepted', 'rejected'],
  accepted: ['in-progress'],
  'in-progress': ['on-hold', 'completed', 'failed'],
  'on-hold': ['in-progress'],
};

/** Statuses from which the requester may still cancel (before the work is completed or failed). */
const CANCELLABLE: readonly TaskStatus[] = ['requested', 'received', 'accepted', 'in-progress', 'on-hold'];

/** The statuses only the owner sets, and those only the requester sets. */
export const OWNER_STATUSES: readonly TaskStatus[] = ['received', 'accepted', 'rejected', 'in-progress', 'on-hold', 'completed', 'failed'];
export const REQUESTER_STATUSES: readonly TaskStatus[] = ['cancelled', 'entered-in-error'];

/** The statuses a party may move a referral Task to from `from` (empty: none). */
export function allowedTransitions(from: TaskStatus, party: ReferralParty): TaskStatus[] {
  if (party === 'owner') return [...(OWNER_TRANSITIONS[from] ?? [])];
  const next: TaskStatus[] = [];
  if (CANCELLABLE.includes(from)) next.push('cancelled');
  // entered-in-error ends the referral from any state but itself (the record was a mistake).
  if (from !== 'entered-in-error') next.push('entered-in-error');
  return next;
}

export type TransitionJudgement =
  | { allowed: true }
  /** `wrong-party`: the status is the other party's to set (403); `not-a-transition`: nobody may make it now (422). */
  | { allowed: false; refusal: 'wrong-party' | 'not-a-transition'; allowedTransitions: TaskStatus[] };

/** Whether `party` may move a referral Task from `from` to `to`. */
export function judgeTransition(from: TaskStatus, to: TaskStatus, party: ReferralParty): TransitionJudgement {
  const allowed = allowedTransitions(from, party);
  if (allowed.includes(to)) return { allowed: true };
  const others = party === 'owner' ? REQUESTER_STATUSES : OWNER_STATUSES;
  return { allowed: false, refusal: others.includes(to) ? 'wrong-party' : 'not-a-transition', allowedTransitions: allowed };
}

/**
 * Final states: no transition of either party leads out of them except entered-in-error. The
 * cancellable states are exactly those the owner can move on from (a unit test holds them equal).
 */
export function isFinal(status: TaskStatus): boolean {
  return !CANCELLABLE.includes(status);
}
