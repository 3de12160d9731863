import { Module } from '@nestjs/common';
import { FhirModule } from '../fhir/fhir.module';
import { ReferOperation } from './refer.operation';
import { ReferralAccess } from './referral-access.service';
import { ReferralAccessContributor } from './referral-access.contributor';
import { ReferralWritePolicy } from './referral.write-policy';
import { ReferralTransitionListener } from './referral-transition.listener';
import { SubscriptionsModule } from './subscriptions/subscriptions.module';

/**
 * Referrals between organizations (docs/referrals.md): ServiceRequest/$refer, the referral write
 * policy and the state machine's validate listener, registered on the extension points; the
 * referral-scoped access (ReferralAccessContributor, basis `referral`) and the party rule for a
 * referral's Task and ServiceRequest, registered on the read-access registry.
 */
@Module({
  imports: [FhirModule, SubscriptionsModule],
  providers: [ReferOperation, ReferralWritePolicy, ReferralTransitionListener, ReferralAccess, ReferralAccessContributor],
  exports: [ReferralAccess],
})
export class ReferralsModule {}
