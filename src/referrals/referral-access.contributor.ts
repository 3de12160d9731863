import { Injectable, OnModuleInit } from '@nestjs/common';
import type { SqlBinder } from '../fhir/pipeline/access-predicate';
import { JudgedRow, JudgingRequester, PatientAccessContributor, ReadAccessRegistry, ReadRestriction } from '../fhir/pipeline/read-access';
import { referralPartyCondition, TaskGrantShape, taskGrantQueries } from '../fhir/search/task-access-probe';
import { REFERRAL_SERVICE_REQUEST_PROFILE, REFERRAL_TASK_PROFILE } from './referral-profiles';
import { ReferralAccess } from './referral-access.service';

/**
 * Referral-scoped access (docs/referrals.md) as a read-access contributor with basis `referral`:
 * the consent stage asks it, per patient of a row, only where the base policy would not share, and
 * ANDs its answer with the patient's denials and the sensitive-label terms, so those still win.
 * Also registers the party rule: a referral's Task and ServiceRequest are read by its parties only.
 */
@Injectable()
export class ReferralAccessContributor implements PatientAccessContributor, OnModuleInit {
  readonly name = 'referral';
  readonly basis = 'referral';
  private readonly shape: TaskGrantShape;
  readonly purposes: readonly string[];
  /** The party rule: a referral's Task and ServiceRequest, beyond their custodian, for the owner only. */
  readonly parties: ReadRestriction = {
    name: 'referral-parties',
    resourceTypes: ['Task', 'ServiceRequest'],
    render: (row, requester, bind) => referralPartyCondition(row, requester, bind, this.shape),
  };

  constructor(
    private readonly registry: ReadAccessRegistry,
    access: ReferralAccess,
  ) {
    const rule = access.rule;
    this.purposes = rule.purposes;
    this.shape = { taskProfile: REFERRAL_TASK_PROFILE, requestProfile: REFERRAL_SERVICE_REQUEST_PROFILE, openStatuses: rule.openStatuses, graceStatuses: rule.graceStatuses, graceDays: rule.graceDays };
  }

  onModuleInit(): void {
    this.registry.registerContributor(this);
    this.registry.registerRestriction(this.parties);
  }

  /** `patient`'s data of `row` is open to the requester through a live referral. */
  render(patient: string, row: JudgedRow, requester: JudgingRequester, bind: SqlBinder): string {
    const grants = this.grants(patient, row, requester, bind);
    return `(${this.treat(requester, bind)} AND (${grants.map((q) => `EXISTS (${q})`).join(' OR ')}))`;
  }

  /** The first referral (`Task/{id}`, by id) that opened it, for the audit record. */
  renderGrant(patient: string, row: JudgedRow, requester: JudgingRequester, bind: SqlBinder): string {
    const grants = this.grants(patient, row, requester, bind);
    return `CASE WHEN ${this.treat(requester, bind)} THEN (SELECT 'Task/' || g.id FROM (${grants.map((q) => `(${q})`).join(' UNION ALL ')}) g(id) ORDER BY g.id LIMIT 1) END`;
  }

  private treat(requester: JudgingRequester, bind: SqlBinder): string {
    return `${requester.purpose} = ANY(${bind.bind(this.purposes)}::text[])`;
  }

  private grants(patient: string, row: JudgedRow, requester: JudgingRequester, bind: SqlBinder): string[] {
    const q = taskGrantQueries(patient, row, requester, bind, this.shape);
    return [...q.ownerReadsReferral, ...q.ownerReads, ...q.requesterReads];
  }
}
