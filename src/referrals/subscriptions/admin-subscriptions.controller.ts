import { Controller, Get, Req } from '@nestjs/common';
import type { Request } from 'express';
import { auditRecord } from '../../fhir/pipeline/audit-record';
import { FhirError } from '../../common/fhir-error';
import { RequestContext } from '../../common/request-context';
import { AuditStage } from '../../fhir/pipeline/pipeline.stages';
import { ANONYMOUS, Principal } from '../../fhir/pipeline/principal';
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
    const started = performance.now();
    const principal = (req as Request & { user?: Principal }).user ?? ANONYMOUS;
    const record = (outcome: 'success' | 'failure', status: number, failureCode?: string) =>
      this.audit.record(
        auditRecord({
          kind: 'admin',
          subtype: 'subscription-list-failing',
          principal,
          address: req.ip,
          path: req.path,
          outcome,
          status,
          failureCode,
          accessBasis: ['policy: admin role'],
          durationMs: Math.round(performance.now() - started),
          requestId: RequestContext.requestId(),
        }),
      );
    if (principal.role !== 'admin') {
      await record('failure', 403, 'forbidden');
      throw FhirError.forbidden('Listing failing Subscriptions needs the admin role');
    }
    const subscriptions = await this.registrations.failing();
    await record('success', 200);
    return { subscriptions };
  }
}
