import { BeforeApplicationShutdown, Inject, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { PollingWorker } from '../../jobs/polling-worker';
import { APP_CONFIG, AppConfig } from '../../config/app.config';
import type { AccessContext } from '../../fhir/pipeline/access-context';
import { SearchService, VersionReaders } from '../../fhir/search/search.service';
import { StorageSessions } from '../../fhir/storage/storage-session';
import { SubscriberAccess } from './subscriber-access';
import { RetryPolicy, SUBSCRIPTION_CONFIG, SubscriptionConfig } from './subscription-config';
import { ClaimedMatches, PendingMatch, SubscriptionMatchesPending } from './subscription-match-pending.repository';
import { NotificationJobData } from './subscription-matching.listener';
import { SubscriptionNotifications } from './subscription-notification.repository';
import { SubscriptionRegistration, SubscriptionRegistrations } from './subscription-registration.repository';

/** Retries of a failed match batch, as the pg-boss queue `subscription.match` had them: 1 s doubled with jitter, at most 60 s, 10 retries. */
export const MATCH_RETRY_POLICY: RetryPolicy = { retryLimit: 10, retryDelaySeconds: 1, retryDelayMaxSeconds: 60 };

/** Part of a batch's pending matches were claimed again elsewhere: the batch rolls back and is retried. */
class MatchBatchClaimLapsed extends Error {
  readonly code = 'subscription-match-claim-lapsed';
}

/**
 * The second half of rest-hook matching (docs/referrals.md, Matching), off the write's critical
 * path: each node with job workers claims batches of the writes' pending matches
 * (`subscription_match_pending`, one row per write whose version some criteria matched in memory;
 * SKIP LOCKED and a lease, so several nodes never judge one row at the same time); for all of a
 * batch's versions and candidate subscribers, ONE statement tells which subscriber may read which
 * version (`SearchService.readableVersions`, each under the owning client's own access), and one
 * notification per subscriber that may read it is inserted (one statement for the batch, table
 * `subscription_notification`) in the same transaction that deletes the batch's rows, fenced to its
 * lease. A crash before that commit leaves the rows to be claimed again once the lease passed; a
 * notification's id is stable per (Subscription, resource, version) (`notificationId`), so a batch
 * judged twice inserts nothing twice while the notification is still queued. Subscriptions deleted
 * or turned off since the write, and clients that may no longer search the type, get nothing. A
 * failed batch is judged again row by row; a row that fails alone is retried with backoff
 * (MATCH_RETRY_POLICY), then given up.
 */
@Injectable()
export class SubscriptionMatchJob implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger('SubscriptionMatch');
  /**
   * Claims and judges batches. No wake-up on a write's commit: the matches committed between two
   * polls are judged together (one access statement for all of them); a full batch means a
   * backlog, claimed again at once.
   */
  private readonly worker = new PollingWorker({
    runOnce: () => this.runOnce(),
    batchSize: () => this.config.matchBatchSize,
    pollMs: () => this.config.matchPollMs,
    logger: this.logger,
    failure: 'subscription match claim failed',
  });

  constructor(
    private readonly pending: SubscriptionMatchesPending,
    private readonly registrations: SubscriptionRegistrations,
    private readonly notifications: SubscriptionNotifications,
    private readonly access: SubscriberAccess,
    private readonly search: SearchService,
    private readonly sessions: StorageSessions,
    @Inject(SUBSCRIPTION_CONFIG) private readonly config: SubscriptionConfig,
    @Inject(APP_CONFIG) private readonly app: AppConfig,
  ) {}

  onApplicationBootstrap(): void {
    // JOBS_WORKERS=off: this node only inserts pending matches.
    if (!this.app.jobs.workers) return;
    this.worker.start();
  }

  /** Lets the batch in flight finish before the database closes. */
  async beforeApplicationShutdown(): Promise<void> {
    await this.worker.stop();
  }

  /**
   * Claims one batch and judges it. A failed batch of several rows is judged again row by row (each
   * its own transaction, under the same lease), so one row that cannot be judged does not hold back
   * or give up the others with it; the rows that fail alone count an attempt (backoff, then given
   * up). Answers how many were claimed.
   */
  async runOnce(): Promise<number> {
    const batch = await this.pending.claim(this.config.matchBatchSize, this.config.matchLeaseSeconds);
    if (!batch) return 0;
    try {
      await this.runBatch(batch);
    } catch (err) {
      const failed = batch.matches.length > 1 ? await this.oneByOne(batch) : batch.matches;
      const givenUp = await this.pending.failed({ ...batch, matches: failed }, MATCH_RETRY_POLICY);
      this.logger.warn({ msg: 'subscription match batch failed', matches: batch.matches.length, failedAlone: failed.length, attempt: Math.max(...failed.map((m) => m.attempts)) + 1, code: (err as { code?: string }).code ?? 'error' });
      for (const key of givenUp) this.logger.warn({ msg: 'subscription match given up', match: key, retries: MATCH_RETRY_POLICY.retryLimit });
    }
    return batch.matches.length;
  }

  /** The rows of a failed batch judged one at a time; answers those that failed alone too. */
  private async oneByOne(batch: ClaimedMatches): Promise<PendingMatch[]> {
    const failed: PendingMatch[] = [];
    for (const match of batch.matches) {
      try {
        await this.runBatch({ ...batch, matches: [match] });
      } catch {
        failed.push(match);
      }
    }
    return failed;
  }

  /** Judges a claimed batch; throws when it failed (nothing committed). */
  async runBatch(batch: ClaimedMatches): Promise<void> {
    const matches = batch.matches;
    const started = Date.now();
    const registrations = new Map((await this.registrations.byIds([...new Set(matches.flatMap((m) => [...m.candidates, ...m.matched]))])).map((r) => [r.id, r]));
    const live = (id: string): SubscriptionRegistration | undefined => {
      const reg = registrations.get(id);
      return reg && reg.status !== 'off' ? reg : undefined;
    };
    const notifications: NotificationJobData[] = [];
    const versions: VersionReaders[] = [];
    const askedFor: { match: PendingMatch; subscribers: { id: string; ctx: AccessContext }[] }[] = [];
    for (const match of matches) {
      const { resourceType, id, versionId } = match;
      // Criteria and access tested in the write's transaction already.
      for (const subscriptionId of match.matched) if (live(subscriptionId)) notifications.push({ subscriptionId, resourceType, id, versionId });
      const subscribers: { id: string; ctx: AccessContext }[] = [];
      for (const subscriptionId of match.candidates) {
        const reg = live(subscriptionId);
        const ctx = reg && (await this.access.contextOf(reg.principal, resourceType));
        if (ctx) subscribers.push({ id: subscriptionId, ctx });
      }
      if (!subscribers.length || !Number.isInteger(Number(versionId))) continue;
      askedFor.push({ match, subscribers });
      versions.push({ resourceType, id, versionId: Number(versionId), contexts: subscribers.map((s) => s.ctx) });
    }
    const completed = await this.sessions.run({ transactional: true }, async ({ tx }) => {
      const readable = await this.search.readableVersions(versions, tx);
      askedFor.forEach(({ match, subscribers }, i) => {
        const { resourceType, id, versionId } = match;
        for (const s of subscribers) if (readable[i].has(s.ctx)) notifications.push({ subscriptionId: s.id, resourceType, id, versionId });
      });
      // Deleted with the notifications they caused: both or neither. Fenced to the lease: rows no
      // longer ours (judged already, claimed again after the lease lapsed) add nothing, so a match
      // judged twice yields one notification even after it was delivered (the notification row is
      // gone by then, so its id alone could not tell).
      const done = await this.pending.completeIn(tx, batch);
      if (done === 0) return 0;
      // Some lost their claim, some not: roll back; ours are retried, the others are judged elsewhere.
      if (done < matches.length) throw new MatchBatchClaimLapsed(`${matches.length - done} of ${matches.length} pending matches lost their claim`);
      await this.notifications.insertMany(tx, notifications);
      return done;
    });
    if (completed && notifications.length) this.notifications.inserted();
    // Ids and counts only.
    this.logger.debug({ msg: 'subscription match batch', matches: matches.length, completed, versions: versions.length, notifications: completed ? notifications.length : 0, ms: Date.now() - started });
  }
}
