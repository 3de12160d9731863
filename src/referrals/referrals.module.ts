import { Module } from '@nestjs/common';
import { FhirModule } from '../fhir/fhir.module';
import { ReferOperation } from './refer.operation';
import { ReferralWritePolicy } from './referral.write-policy';
import { ReferralTransitionListener } from './referral-transition.listener';

/**
 * Referrals between organizations (docs/referrals.md): ServiceRequest/$refer, the referral write
 * policy and the state machine's validate listener, registered on the extension points.
 */
@Module({
  imports: [FhirModule],
  providers: [ReferOperation, ReferralWritePolicy, ReferralTransitionListener],
})
export class ReferralsModule {}
