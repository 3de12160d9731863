import { createHmac } from 'node:crypto';
import { BeforeApplicationShutdown, Inject, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { PollingWorker } from '../../jobs/polling-worker';
import type { Subscription } from '@medplum/fhirtypes';
import { AuditRecord, auditRecord } from '../../fhir/pipeline/audit-record';
import { ClientRegistrationRepository } from '../../auth/client-registration.repository';
import { SystemAccess } from '../../fhir/pipeline/system-access';
import { AuditStage } from '../../fhir/pipeline/pipeline.stages';
import { ResourceRepository, StoredVersion, versionWrite } from '../../fhir/storage/resource.repository';
import type { AccessContext } from '../../fhir/pipeline/access-context';
import { StorageSessions } from '../../fhir/storage/storage-session';
import { APP_CONFIG, AppConfig } from '../../config/app.config';
import { SubscriberAccess } from './subscriber-access';
import { SUBSCRIPTION_CONFIG, SubscriptionConfig } from './subscription-config';
import { ClaimedNotification, SubscriptionNotifications } from './subscription-notification.repository';
import { SubscriptionRegistration, SubscriptionRegistrations } from './subscription-registration.repository';
import { FHIR_JSON_PAYLOAD } from './subscription-registration.listener';
import { channelHeader } from './subscription-endpoint';
import { RestHookClient } from './rest-hook-client';

/** `X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` (body empty without payload). */
export function signature(secret: string, timestamp: number, body: string): string {
  return `t=${timestamp},v1=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/** What became of one claimed notification. */
type Outcome = 'delivered' | 'dropped' | 'failed';

/** A notification with what it sends: its registration and the resource as its subscriber may read it now. */
interface Ready {
  n: ClaimedNotification;
  reg: SubscriptionRegistration;
  stored: StoredVersion;
}

/**
 * Sends rest-hook notifications from the outbox table (docs/referrals.md, Delivery): each node's
 * worker claims a batch of due notifications (`SubscriptionNotifications.claim`: SKIP LOCKED and a
 * lease, so several nodes never send one row at the same time, and a row whose worker died is sent
 * again once its lease passed), sends them SUBSCRIPTION_DELIVERY_CONCURRENCY at once, and settles
 * the batch in one statement (sent and dropped rows deleted, failed ones retried with backoff).
 * A POST carries `X-Notification-Id` (stable per Subscription and version: the same on every retry,
 * so the receiver drops duplicates), `X-Subscription-Id`, the Subscription's `channel.header` lines,
 * and `X-Signature` when it has a secret. With payload `application/fhir+json` the body is the
 * resource as the owning client may read it now (re-read under its access: a resource it may no
 * longer read is not sent at all); without payload there is no body. Each attempt that reached
 * the endpoint is audited as a disclosure to the owning organization; a batch's records are
 * appended together (one commit) after its POSTs, before it is settled. SUBSCRIPTION_ERROR_AFTER_FAILURES
 * failures in a row set the Subscription to `error` (with the reason in `error`), a success sets it
 * `active` again; after SUBSCRIPTION_RETRY_LIMIT retries a notification is given up.
 */
@Injectable()
export class SubscriptionDeliveryJob implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger('SubscriptionDelivery');
  /** Waits the poll interval between batches, or less when this node's match job inserted notifications. */
  private readonly worker = new PollingWorker({
    runOnce: () => this.runBatch(),
    batchSize: () => this.config.deliveryBatchSize,
    pollMs: () => this.config.deliveryPollMs,
    logger: this.logger,
    failure: 'subscription delivery batch failed',
  });
  /** Keep-alive connections, at most one per lane to an endpoint. */
  private readonly client: RestHookClient;

  constructor(
    private readonly notifications: SubscriptionNotifications,
    private readonly registrations: SubscriptionRegistrations,
    private readonly access: SubscriberAccess,
    private readonly sessions: StorageSessions,
    private readonly repository: ResourceRepository,
    private readonly system: SystemAccess,
    private readonly audit: AuditStage,
    private readonly clients: ClientRegistrationRepository,
    @Inject(SUBSCRIPTION_CONFIG) private readonly config: SubscriptionConfig,
    @Inject(APP_CONFIG) private readonly app: AppConfig,
  ) {
    this.client = new RestHookClient(config.concurrency);
  }

  /** A lease long enough for a whole batch whose endpoints all time out, at the configured concurrency. */
  get leaseSeconds(): number {
    const c = this.config;
    return Math.max(c.deliveryLeaseMinSeconds, Math.ceil(((Math.ceil(c.deliveryBatchSize / c.concurrency) + 1) * c.timeoutMs) / 1000));
  }

  onApplicationBootstrap(): void {
    // JOBS_WORKERS=off: this node only inserts (the match job does not run here either).
    if (!this.app.jobs.workers) return;
    this.notifications.onInserted(() => this.worker.wake());
    this.worker.start();
  }

  /** Lets the batch in flight finish (its POSTs are bounded by the timeout) before the database closes. */
  async beforeApplicationShutdown(): Promise<void> {
    await this.worker.stop();
    this.client.close();
  }

  /** Claims, sends and settles one batch; answers how many were claimed. */
  async runBatch(): Promise<number> {
    const batch = await this.notifications.claim(this.config.deliveryBatchSize, this.leaseSeconds);
    if (!batch) return 0;
    const outcomes = new Map<ClaimedNotification, Outcome>();
    const ready = await this.readBatch(batch.notifications, outcomes);
    /** One disclosure record per attempt that was made, appended together after the batch's POSTs. */
    const disclosures: AuditRecord[] = [];
    let next = 0;
    const lane = async (): Promise<void> => {
      while (next < ready.length) {
        const r = ready[next++];
        outcomes.set(r.n, await this.send(r, disclosures).catch((err: unknown) => {
          this.logger.warn({ msg: 'subscription notification error', subscription: r.n.subscriptionId, notification: r.n.notificationId, code: (err as { code?: string }).code ?? 'error' });
          return 'failed' as const;
        }));
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.config.concurrency, ready.length) }, lane));
    // Before the settle: should the append fail, the batch is not settled and is sent again (same
    // ids) once its lease passed, so no delivery stays without its record.
    await this.audit.recordMany(disclosures);
    const ids = (o: Outcome) => [...outcomes].filter(([, v]) => v === o).map(([n]) => n.notificationId);
    const givenUp = await this.notifications.settle(batch.lease, [...ids('delivered'), ...ids('dropped')], ids('failed'), this.config);
    for (const id of givenUp) this.logger.warn({ msg: 'subscription notification given up', notification: id, retries: this.config.retryLimit });
    return batch.notifications.length;
  }

  /**
   * The batch's registrations (one statement), owning clients (one look-up each) and resources:
   * one statement for all, each resource judged under its subscriber's access
   * (`readCurrentForReaders`), instead of one per notification or per subscriber. Those with
   * nothing to send are recorded as dropped in `outcomes`.
   */
  private async readBatch(batch: readonly ClaimedNotification[], outcomes: Map<ClaimedNotification, Outcome>): Promise<Ready[]> {
    const registrations = new Map((await this.registrations.byIds([...new Set(batch.map((n) => n.subscriptionId))])).map((r) => [r.id, r]));
    const clients = new Map<string, Promise<boolean>>();
    const live = (clientId: string): Promise<boolean> => {
      if (!clients.has(clientId)) clients.set(clientId, this.clients.find(clientId).then((c) => !!c && !c.disabled));
      return clients.get(clientId)!;
    };
    const pending: { n: ClaimedNotification; reg: SubscriptionRegistration; ctx: AccessContext }[] = [];
    for (const n of batch) {
      const reg = registrations.get(n.subscriptionId);
      // Deleted or turned off since the match: nothing to send (logged with ids only).
      if (!reg || reg.status === 'off') outcomes.set(n, this.dropped(n, 'subscription gone or off'));
      else if (!reg.principal.clientId || !(await live(reg.principal.clientId))) outcomes.set(n, this.dropped(n, 'owning client disabled or deleted'));
      else {
        const ctx = await this.access.contextOf(reg.principal, n.resourceType);
        if (!ctx) outcomes.set(n, this.dropped(n, 'owning client may no longer search the type'));
        else pending.push({ n, reg, ctx });
      }
    }
    // A context is one subscriber's access to one type; every context's reads go in one statement.
    const byContext = new Map<AccessContext, { ctx: AccessContext; resourceType: string; ids: string[] }>();
    for (const { n, ctx } of pending) {
      const group = byContext.get(ctx) ?? { ctx, resourceType: n.resourceType, ids: [] };
      group.ids.push(n.id);
      byContext.set(ctx, group);
    }
    let read = new Map<AccessContext, Map<string, StoredVersion>>();
    if (byContext.size) {
      // A read-only transaction: the statement's plan setting is SET LOCAL.
      await this.sessions.run({ transactional: true }, async ({ tx }) => {
        read = await this.repository.readCurrentForReaders([...byContext.values()], tx);
      });
    }
    const ready: Ready[] = [];
    for (const p of pending) {
      const stored = read.get(p.ctx)?.get(p.n.id);
      // Not readable (consent withdrawn, deleted since): the subscriber learns nothing of it.
      if (!stored || stored.deleted || !stored.resource) outcomes.set(p.n, this.dropped(p.n, 'resource no longer readable by the subscriber'));
      else ready.push({ n: p.n, reg: p.reg, stored });
    }
    return ready;
  }

  private async send({ n, reg, stored }: Ready, disclosures: AuditRecord[]): Promise<Outcome> {
    const id = n.id;
    const resource = stored.resource!;
    const body = reg.payload === FHIR_JSON_PAYLOAD ? JSON.stringify(resource) : '';
    const headers: Record<string, string> = { 'X-Notification-Id': n.notificationId, 'X-Subscription-Id': reg.id };
    for (const line of reg.headers) {
      const header = channelHeader(line);
      if (header) headers[header[0]] = header[1];
    }
    if (body) headers['Content-Type'] = FHIR_JSON_PAYLOAD;
    if (reg.secret) headers['X-Signature'] = signature(reg.secret, Math.floor(Date.now() / 1000), body);
    const started = Date.now();
    const status = await this.client.post(reg.endpoint, headers, body, this.config.timeoutMs);
    const ok = status >= 200 && status < 300;
    disclosures.push(this.disclosure(reg, resource.resourceType, id, stored.versionId, stored.compartments, ok, status, Date.now() - started));
    this.logger.log({ msg: 'subscription notification', subscription: reg.id, notification: n.notificationId, attempt: n.attempts + 1, status, ms: Date.now() - started });
    if (ok) {
      // The usual case (no failures counted when the batch started) needs no transaction; a count a
      // concurrent failure adds meanwhile is reset by the next success.
      if (reg.failureCount > 0 || reg.status === 'error') await this.settle(reg, 'delivered');
      return 'delivered';
    }
    await this.settle(reg, status ? `the endpoint answered HTTP ${status}` : 'the endpoint could not be reached or timed out');
    // The batch shares `reg`: a later success of this batch must reset the count this failure added.
    reg.failureCount++;
    return 'failed';
  }

  private dropped(n: ClaimedNotification, why: string): Outcome {
    this.logger.log({ msg: 'subscription notification dropped', subscription: n.subscriptionId, notification: n.notificationId, why });
    return 'dropped';
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
  private disclosure(reg: SubscriptionRegistration, resourceType: string, id: string, versionId: number, compartments: readonly string[], ok: boolean, status: number, ms: number): AuditRecord {
    return auditRecord({
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
    });
  }
}
