import { Inject, Injectable, Logger, OnModuleInit } from '@nestjs/common';
import type { AccessContext } from '../../fhir/pipeline/access-context';
import { SearchService, VersionReaders } from '../../fhir/search/search.service';
import { StorageSessions } from '../../fhir/storage/storage-session';
import { JobQueue, QueuedJob } from '../../jobs/job-queue';
import { SubscriberAccess } from './subscriber-access';
import { SUBSCRIPTION_CONFIG, SubscriptionConfig } from './subscription-config';
import { MatchJobData, NotificationJobData, SUBSCRIPTION_MATCH_QUEUE } from './subscription-matching.listener';
import { SubscriptionNotifications } from './subscription-notification.repository';
import { SubscriptionRegistration, SubscriptionRegistrations } from './subscription-registration.repository';

/** Part of a batch's match jobs were taken again elsewhere: the batch rolls back and is retried. */
class MatchBatchClaimLapsed extends Error {
  readonly code = 'subscription-match-claim-lapsed';
}

/**
 * The second half of rest-hook matching (docs/referrals.md, Matching), off the write's critical
 * path: the jobs of queue `subscription.match` (one per write whose version some criteria matched
 * in memory) are taken in batches; for all of a batch's versions and candidate subscribers, ONE
 * statement tells which subscriber may read which version (`SearchService.readableVersions`, each
 * under the owning client's own access), and one notification per subscriber that may read it is
 * inserted (one statement for the batch, table `subscription_notification`) in the same transaction
 * that completes the match jobs. A notification's id is stable per (Subscription, resource,
 * version) (`notificationId`), so a match job that runs again after its transaction committed
 * inserts nothing twice while the notification is still queued,
 * and a receiver that dedups by `X-Notification-Id` never sees it twice later either. Subscriptions
 * deleted or turned off since the write, and clients that may no longer search the type, get nothing.
 */
@Injectable()
export class SubscriptionMatchJob implements OnModuleInit {
  private readonly logger = new Logger('SubscriptionMatch');

  constructor(
    private readonly jobs: JobQueue,
    private readonly registrations: SubscriptionRegistrations,
    private readonly notifications: SubscriptionNotifications,
    private readonly access: SubscriberAccess,
    private readonly search: SearchService,
    private readonly sessions: StorageSessions,
    @Inject(SUBSCRIPTION_CONFIG) private readonly config: SubscriptionConfig,
  ) {}

  async onModuleInit(): Promise<void> {
    // No NOTIFY: the writes' commits stay free of it, and the jobs committed between two polls are
    // matched together (one access statement for all of them).
    this.jobs.define(SUBSCRIPTION_MATCH_QUEUE, { retryLimit: 10, retryDelaySeconds: 1, retryBackoff: true, retryDelayMaxSeconds: 60, expireInSeconds: 300, notify: false });
    await this.jobs.workBatch<MatchJobData>(SUBSCRIPTION_MATCH_QUEUE, (jobs) => this.runBatch(jobs), {
      batchSize: this.config.matchBatchSize,
      pollSeconds: this.config.matchPollMs / 1000,
    });
  }

  async runBatch(jobs: readonly QueuedJob<MatchJobData>[]): Promise<void> {
    const started = Date.now();
    const registrations = new Map((await this.registrations.byIds([...new Set(jobs.flatMap((j) => [...j.data.candidates, ...j.data.matched]))])).map((r) => [r.id, r]));
    const live = (id: string): SubscriptionRegistration | undefined => {
      const reg = registrations.get(id);
      return reg && reg.status !== 'off' ? reg : undefined;
    };
    const notifications: NotificationJobData[] = [];
    const versions: VersionReaders[] = [];
    const askedFor: { job: QueuedJob<MatchJobData>; subscribers: { id: string; ctx: AccessContext }[] }[] = [];
    for (const job of jobs) {
      const { resourceType, id, versionId } = job.data;
      // Criteria and access tested in the write's transaction already.
      for (const subscriptionId of job.data.matched) if (live(subscriptionId)) notifications.push({ subscriptionId, resourceType, id, versionId });
      const subscribers: { id: string; ctx: AccessContext }[] = [];
      for (const subscriptionId of job.data.candidates) {
        const reg = live(subscriptionId);
        const ctx = reg && (await this.access.contextOf(reg.principal, resourceType));
        if (ctx) subscribers.push({ id: subscriptionId, ctx });
      }
      if (!subscribers.length || !Number.isInteger(Number(versionId))) continue;
      askedFor.push({ job, subscribers });
      versions.push({ resourceType, id, versionId: Number(versionId), contexts: subscribers.map((s) => s.ctx) });
    }
    const completed = await this.sessions.run({ transactional: true }, async ({ tx }) => {
      const readable = await this.search.readableVersions(versions, tx);
      askedFor.forEach(({ job, subscribers }, i) => {
        const { resourceType, id, versionId } = job.data;
        for (const s of subscribers) if (readable[i].has(s.ctx)) notifications.push({ subscriptionId: s.id, resourceType, id, versionId });
      });
      // Completed with the notifications they caused: both or neither. Fenced to the attempt
      // fetched: jobs no longer ours (completed already, taken again after their claim lapsed) add
      // nothing, so a match job run twice yields one notification even after it was delivered
      // (the notification row is gone by then, so its id alone could not tell).
      const done = await this.jobs.completeIn(tx, SUBSCRIPTION_MATCH_QUEUE, jobs);
      if (done === 0) return 0;
      // Some lost their claim, some not: roll back; pg-boss retries ours, the others run elsewhere.
      if (done < jobs.length) throw new MatchBatchClaimLapsed(`${jobs.length - done} of ${jobs.length} match jobs lost their claim`);
      await this.notifications.insertMany(tx, notifications);
      return done;
    });
    if (completed && notifications.length) this.notifications.inserted();
    // Ids and counts only.
    this.logger.debug({ msg: 'subscription match batch', jobs: jobs.length, completed, versions: versions.length, notifications: completed ? notifications.length : 0, ms: Date.now() - started });
  }
}
