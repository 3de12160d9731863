import { createHmac } from 'node:crypto';
import { Inject, Injectable, Logger, OnModuleInit } from '@nestjs/common';
import type { Subscription } from '@medplum/fhirtypes';
import { auditRecord } from '../../fhir/pipeline/audit-record';
import { ClientRegistrationRepository } from '../../auth/client-registration.repository';
import { SystemAccess } from '../../fhir/pipeline/system-access';
import { AuditStage } from '../../fhir/pipeline/pipeline.stages';
import { ResourceRepository, versionWrite } from '../../fhir/storage/resource.repository';
import { StorageSessions } from '../../fhir/storage/storage-session';
import { JobQueue, QueuedJob } from '../../jobs/job-queue';
import { SubscriberAccess } from './subscriber-access';
import { SUBSCRIPTION_CONFIG, SubscriptionConfig } from './subscription-config';
import { NotificationJobData, SUBSCRIPTION_NOTIFY_QUEUE } from './subscription-matching.listener';
import { SubscriptionRegistration, SubscriptionRegistrations } from './subscription-registration.repository';
import { FHIR_JSON_PAYLOAD } from './subscription-registration.listener';

/** A delivery attempt that did not reach a 2xx: the job is retried with backoff. */
class DeliveryFailed extends Error {
  readonly code = 'subscription-delivery-failed';
}

/** `X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` (body empty without payload). */
export function signature(secret: string, timestamp: number, body: string): string {
  return `t=${timestamp},v1=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/**
 * Sends rest-hook notifications from the outbox (docs/referrals.md, Subscriptions): a POST to the
 * Subscription's endpoint with `X-Notification-Id` (the job id: the same on every retry, so the
 * receiver drops duplicates), `X-Subscription-Id`, the Subscription's `channel.header` lines, and
 * `X-Signature` when it has a secret. With payload `application/fhir+json` the body is the
 * resource as the owning client may read it now (re-read under its access: a resource it may no
 * longer read is not sent at all); without payload there is no body. Each attempt that reached
 * the endpoint is audited as a disclosure to the owning organization. A failure is retried by the
 * queue with exponential backoff; SUBSCRIPTION_ERROR_AFTER_FAILURES failures in a row set the
 * Subscription to `error` (with the reason in `error`), a success sets it `active` again.
 */
@Injectable()
export class SubscriptionDeliveryJob implements OnModuleInit {
  private readonly logger = new Logger('SubscriptionDelivery');

  constructor(
    private readonly jobs: JobQueue,
    private readonly registrations: SubscriptionRegistrations,
    private readonly access: SubscriberAccess,
    private readonly sessions: StorageSessions,
    private readonly repository: ResourceRepository,
    private readonly system: SystemAccess,
    private readonly audit: AuditStage,
    private readonly clients: ClientRegistrationRepository,
    @Inject(SUBSCRIPTION_CONFIG) private readonly config: SubscriptionConfig,
  ) {}

  async onModuleInit(): Promise<void> {
    const c = this.config;
    this.jobs.define(SUBSCRIPTION_NOTIFY_QUEUE, {
      retryLimit: c.retryLimit,
      retryDelaySeconds: c.retryDelaySeconds,
      retryBackoff: true,
      retryDelayMaxSeconds: c.retryDelayMaxSeconds,
      expireInSeconds: Math.max(30, Math.ceil((c.timeoutMs * 3) / 1000)),
    });
    await this.jobs.work<NotificationJobData>(SUBSCRIPTION_NOTIFY_QUEUE, (job) => this.run(job), { concurrency: c.concurrency });
  }

  async run(job: QueuedJob<NotificationJobData>): Promise<void> {
    const { subscriptionId, resourceType, id } = job.data;
    const reg = await this.registrations.get(subscriptionId);
    // Deleted or turned off since the match: nothing to send (logged with ids only).
    if (!reg || reg.status === 'off') return this.dropped(job, 'subscription gone or off');
    const client = reg.principal.clientId ? await this.clients.find(reg.principal.clientId) : undefined;
    if (!client || client.disabled) return this.dropped(job, 'owning client disabled or deleted');
    const ctx = await this.access.contextOf(reg.principal, resourceType);
    if (!ctx) return this.dropped(job, 'owning client may no longer search the type');
    const stored = await this.sessions.run({ transactional: false }, ({ tx }) => this.repository.readCurrent(ctx, resourceType, id, tx));
    // Not readable (consent withdrawn, deleted since): the subscriber learns nothing of it.
    if (!stored || stored.deleted || !stored.resource) return this.dropped(job, 'resource no longer readable by the subscriber');
    const body = reg.payload === FHIR_JSON_PAYLOAD ? JSON.stringify(stored.resource) : '';
    const headers: Record<string, string> = { 'X-Notification-Id': job.id, 'X-Subscription-Id': reg.id };
    for (const line of reg.headers) {
      const colon = line.indexOf(':');
      if (colon > 0) headers[line.slice(0, colon).trim()] = line.slice(colon + 1).trim();
    }
    if (body) headers['Content-Type'] = FHIR_JSON_PAYLOAD;
    if (reg.secret) headers['X-Signature'] = signature(reg.secret, Math.floor(Date.now() / 1000), body);
    const started = Date.now();
    let status = 0;
    try {
      const res = await fetch(reg.endpoint, { method: 'POST', headers, body: body || undefined, redirect: 'error', signal: AbortSignal.timeout(this.config.timeoutMs) });
      status = res.status;
      await res.body?.cancel();
    } catch {
      status = 0;
    }
    const ok = status >= 200 && status < 300;
    await this.recordDisclosure(reg, stored.resource.resourceType, id, stored.versionId, stored.compartments, ok, status, Date.now() - started);
    this.logger.log({ msg: 'subscription notification', subscription: reg.id, job: job.id, attempt: job.retryCount + 1, status, ms: Date.now() - started });
    if (ok) {
      // The usual case (no failures counted when the job started) needs no transaction; a count a
      // concurrent failure adds meanwhile is reset by the next success.
      if (reg.failureCount > 0 || reg.status === 'error') await this.settle(reg, 'delivered');
      return;
    }
    await this.settle(reg, status ? `the endpoint answered HTTP ${status}` : 'the endpoint could not be reached or timed out');
    throw new DeliveryFailed(`notification ${job.id} not delivered`);
  }

  private dropped(job: QueuedJob<NotificationJobData>, why: string): void {
    this.logger.log({ msg: 'subscription notification dropped', subscription: job.data.subscriptionId, job: job.id, why });
  }

  /** Counts the outcome; on a change of status (active <-> error) writes the Subscription's new version. */
  private async settle(reg: SubscriptionRegistration, outcome: 'delivered' | string): Promise<void> {
    await this.sessions.run({ transactional: true }, async ({ tx }) => {
      const changed = outcome === 'delivered' ? await this.registrations.delivered(tx, reg.id) : await this.registrations.failed(tx, reg.id, outcome, this.config.errorAfterFailures);
      if (!changed) return;
      const ctx = await this.system.mint('subscription-status', reg.principal);
      const current = await this.repository.readCurrent(ctx, 'Subscription', reg.id, tx);
      if (!current?.resource || current.deleted) return;
      const sub = { ...(current.resource as Subscription) };
      if (outcome === 'delivered') {
        sub.status = 'active';
        delete sub.error;
      } else {
        sub.status = 'error';
        sub.error = `${this.config.errorAfterFailures} deliveries in a row failed; last: ${outcome}`;
      }
      await this.repository.write(ctx, versionWrite(ctx, 'update', 'PUT', sub, reg.id), tx);
    });
  }

  /** A notification is a disclosure to the owning organization (BALP: the resource, its patients, the Subscription as basis). */
  private async recordDisclosure(reg: SubscriptionRegistration, resourceType: string, id: string, versionId: number, compartments: readonly string[], ok: boolean, status: number, ms: number): Promise<void> {
    await this.audit.record(
      auditRecord({
        kind: 'read',
        subtype: 'subscription-notification',
        principal: reg.principal,
        outcome: ok ? 'success' : 'failure',
        status: ok ? 200 : 502,
        ...(ok ? {} : { failureCode: 'transient' }),
        resourceType,
        path: `/${resourceType}/${id}`,
        entities: [{ reference: `${resourceType}/${id}`, versionId: String(versionId), patients: compartments }],
        accessBasis: [`subscription: Subscription/${reg.id} rest-hook to ${new URL(reg.endpoint).origin}${reg.payload ? '' : ' (no payload)'}`],
        durationMs: ms,
      }),
    );
  }
}
