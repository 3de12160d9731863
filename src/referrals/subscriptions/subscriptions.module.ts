import { Module } from '@nestjs/common';
import { AuthModule } from '../../auth/auth.module';
import { FhirModule } from '../../fhir/fhir.module';
import { AdminSubscriptionsController } from './admin-subscriptions.controller';
import { SubscriberAccess } from './subscriber-access';
import { loadSubscriptionConfig, SUBSCRIPTION_CONFIG } from './subscription-config';
import { SubscriptionDeliveryJob } from './subscription-delivery.job';
import { SubscriptionMatchJob } from './subscription-match.job';
import { SubscriptionMatchesPending } from './subscription-match-pending.repository';
import { SubscriptionMatchingListener } from './subscription-matching.listener';
import { SubscriptionNotifications } from './subscription-notification.repository';
import { SubscriptionRegistrationListener } from './subscription-registration.listener';
import { SubscriptionRegistrations } from './subscription-registration.repository';

/**
 * R4 rest-hook Subscriptions (docs/referrals.md, Subscriptions): registration on write, matching
 * of every write under the subscriber's access, delivery from the outbox.
 */
@Module({
  imports: [FhirModule, AuthModule],
  controllers: [AdminSubscriptionsController],
  providers: [
    { provide: SUBSCRIPTION_CONFIG, useFactory: () => loadSubscriptionConfig() },
    SubscriptionRegistrations,
    SubscriptionNotifications,
    SubscriptionMatchesPending,
    SubscriberAccess,
    SubscriptionRegistrationListener,
    SubscriptionMatchingListener,
    SubscriptionMatchJob,
    SubscriptionDeliveryJob,
  ],
})
export class SubscriptionsModule {}
