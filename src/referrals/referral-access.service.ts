import { Inject, Injectable } from '@nestjs/common';
import type { ServiceRequest, Task } from '@medplum/fhirtypes';
import { APP_CONFIG, AppConfig } from '../config/app.config';
import { ReferralAccessGrant, referralAccessGrants, ReferralAccessRule, referralAccessRule } from './referral-access';

/**
 * The referral-scoped access rule with this server's configured window (`REFERRAL_ACCESS_DAYS`),
 * which `ReferralAccessContributor` renders (referral-access.ts).
 */
@Injectable()
export class ReferralAccess {
  readonly rule: ReferralAccessRule;

  constructor(@Inject(APP_CONFIG) config: AppConfig) {
    this.rule = referralAccessRule(config.referralAccessDays);
  }

  grantsOf(task: Task, serviceRequest: ServiceRequest | undefined, now = new Date()): ReferralAccessGrant[] {
    return referralAccessGrants(task, serviceRequest, now, this.rule.graceDays);
  }
}
