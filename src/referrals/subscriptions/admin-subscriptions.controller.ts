import { Controller, Get, Req } from '@nestjs/common';
import type { Request } from 'express';
import { FhirError } from '../../common/fhir-error';
import { AuditStage } from '../../fhir/pipeline/pipeline.stages';
import { AuditedCall } from '../../pipeline/audited-call';
import { SubscriptionRegistrations } from './subscription-registration.repository';

/**
 * `GET /admin/subscriptions`: the failing rest-hook Subscriptions (status `error`, or failures
 * since the last success) for HIE admins, who may not read the Subscriptions themselves (an
 * organization's own records): id, owning organization, endpoint, status, failure count, last
 * error and when. No criteria (a search may hold identifiers) and never the secret. Audited.
 */
@Controller('admin/subscriptions')
export class AdminSubscriptionsController {
  constructor(
    private readonly registrations: SubscriptionRegistrations,
    private readonly audit: AuditStage,
  ) {}

  @Get()
  async failing(@Req() req: Request) {
    const call = new AuditedCall(this.audit, req, { kind: 'admin', subtype: 'subscription-list-failing', accessBasis: ['policy: admin role'] });
    if (call.principal.role !== 'admin') {
      const refused = FhirError.forbidden('Listing failing Subscriptions needs the admin role');
      await call.failed(refused);
      throw refused;
    }
    const subscriptions = await this.registrations.failing();
    await call.succeeded(200);
    return { subscriptions };
  }
}
