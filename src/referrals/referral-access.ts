import type { Reference, ServiceRequest, Task } from '@medplum/fhirtypes';
import { isReferral, organizationIdOf } from './referral-profiles';
import type { TaskStatus } from './referral-state-machine';

/*
 * Referral-scoped access (docs/referrals.md, "Referral-scoped access"): what a referral lets its
 * parties read beyond the base consent policy, and for how long. `ReferralAccessContributor`
 * renders this rule in SQL (through src/fhir/search/task-access-probe.ts) for the consent stage;
 * `referralAccessGrants` evaluates the same rule on one referral in memory.
 */

/** Statuses in which the referral is open: the owner reads its supporting data. */
export const REFERRAL_OPEN_STATUSES: readonly TaskStatus[] = ['requested', 'received', 'accepted', 'in-progress', 'on-hold'];
/** Statuses after which access lasts `graceDays` from the Task's last version (the closing one: a closed referral changes only by entered-in-error). */
export const REFERRAL_GRACE_STATUSES: readonly TaskStatus[] = ['completed', 'failed'];

/**
 * The rule a read-access contributor renders: for purpose TREAT only, the owner organization of a
 * referral Task in an open status (or a grace status within `graceDays` of its last update) may
 * read the resources its focus ServiceRequest names in `supportingInfo` and its `for` Patient
 * (demographics); the requester may read what the Task names in `output`. Rejected, cancelled and
 * entered-in-error end it at once. It only widens the base policy: a patient's deny that matches
 * the reader (or any actor) for TREAT, and a sensitive label not permitted to the reader, still
 * win (the consent stage ANDs the contributor with its deny and label terms). In SQL the reader
 * also reads only the other party's own records (custodian: the requester for supportingInfo, the
 * owner for output), which this in-memory form cannot see.
 */
export interface ReferralAccessRule {
  readonly basis: 'referral';
  readonly purposes: readonly string[];
  readonly openStatuses: readonly TaskStatus[];
  readonly graceStatuses: readonly TaskStatus[];
  readonly graceDays: number;
  /** The owner reads these elements' references: of the focus ServiceRequest, and of the Task. */
  readonly owner: { readonly serviceRequest: readonly string[]; readonly task: readonly string[] };
  /** The requester reads these Task elements' references. */
  readonly requester: { readonly task: readonly string[] };
}

export function referralAccessRule(graceDays: number): ReferralAccessRule {
  return {
    basis: 'referral',
    purposes: ['TREAT'],
    openStatuses: REFERRAL_OPEN_STATUSES,
    graceStatuses: REFERRAL_GRACE_STATUSES,
    graceDays,
    owner: { serviceRequest: ['supportingInfo'], task: ['for'] },
    requester: { task: ['output'] },
  };
}

/** One referral's grant to one organization: the audit record names `referral` as the basis. */
export interface ReferralAccessGrant {
  basis: 'referral';
  /** `Task/{id}`. */
  referral: string;
  organization: string;
  purpose: string;
  /** `Type/id` references readable under the grant. */
  resources: string[];
  /** When it ends (grace statuses); undefined while the referral is open. */
  until?: string;
}

/**
 * The grants one referral gives now: the same rule as `ReferralAccessRule`, evaluated on one Task
 * and its ServiceRequest (explanations, audit, and the rule's own tests).
 */
export function referralAccessGrants(task: Task, serviceRequest: ServiceRequest | undefined, now: Date, graceDays: number): ReferralAccessGrant[] {
  if (!isReferral(task)) return [];
  const status = task.status as TaskStatus;
  let until: string | undefined;
  if (REFERRAL_GRACE_STATUSES.includes(status)) {
    const closed = Date.parse(task.meta?.lastUpdated ?? '');
    if (Number.isNaN(closed)) return [];
    until = new Date(closed + graceDays * 86_400_000).toISOString();
    if (now.getTime() >= Date.parse(until)) return [];
  } else if (!REFERRAL_OPEN_STATUSES.includes(status)) {
    return [];
  }
  const referral = `Task/${task.id}`;
  const grants: ReferralAccessGrant[] = [];
  const owner = organizationIdOf(task.owner?.reference);
  const focus = serviceRequest && task.focus?.reference === `ServiceRequest/${serviceRequest.id}` ? serviceRequest : undefined;
  const ownerReads = referencesOf([...(focus?.supportingInfo ?? []), ...(task.for ? [task.for] : [])]);
  if (owner && ownerReads.length) grants.push({ basis: 'referral', referral, organization: owner, purpose: 'TREAT', resources: ownerReads, until });
  const requester = organizationIdOf(task.requester?.reference);
  const outputs = referencesOf((task.output ?? []).map((o) => o.valueReference).filter((r): r is Reference => !!r));
  if (requester && outputs.length) grants.push({ basis: 'referral', referral, organization: requester, purpose: 'TREAT', resources: outputs, until });
  return grants;
}

/** Relative `Type/id` references only (absolute and contained ones name nothing stored here). */
function referencesOf(refs: readonly Reference[]): string[] {
  const out = refs.map((r) => r.reference ?? '').filter((r) => /^[A-Z][A-Za-z]{1,63}\/[A-Za-z0-9\-.]{1,64}$/.test(r));
  return [...new Set(out)];
}
