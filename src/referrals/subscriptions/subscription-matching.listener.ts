import { createHash } from 'node:crypto';
import { Inject, Injectable, Logger, OnModuleInit } from '@nestjs/common';
import type { Resource } from '@medplum/fhirtypes';
import type { EntityManager } from 'typeorm';
import { FhirError } from '../../common/fhir-error';
import { WriteEvent, WriteEvents, WriteListener } from '../../fhir/pipeline/write-events';
import { PreparedCriteria, SearchService } from '../../fhir/search/search.service';
import { SubscriberAccess } from './subscriber-access';
import { SUBSCRIPTION_CONFIG, SubscriptionConfig } from './subscription-config';
import { SubscriptionMatchesPending } from './subscription-match-pending.repository';
import { SubscriptionRegistration, SubscriptionRegistrations } from './subscription-registration.repository';

/** One rest-hook notification: ids only. */
export interface NotificationJobData {
  subscriptionId: string;
  resourceType: string;
  id: string;
  versionId: string;
}

/**
 * The notification's id (`X-Notification-Id`, its row's key in `subscription_notification`): one
 * per (Subscription, resource, version), so a pending match judged twice (a node that died after
 * its batch's transaction committed) inserts the same notification, not a second one. A UUID (RFC 9562 version 8, name-based on SHA-256).
 */
export function notificationId(n: NotificationJobData): string {
  const hex = createHash('sha256').update(`${n.subscriptionId}\n${n.resourceType}\n${n.id}\n${n.versionId}`).digest('hex');
  const variant = ((parseInt(hex[16], 16) & 0x3) | 0x8).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-8${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/**
 * Starts matching every committed create and update against the active rest-hook Subscriptions of
 * its type, in the write's transaction (pre-commit), keeping there only what needs the written
 * version and is cheap: the in-memory decision on the version's own index rows (`mayMatch`; the
 * criteria it decides entirely are settled without SQL) and, only for criteria it cannot decide
 * (chains, dates, ...), the matching statement on the written row under each subscriber's access
 * (`SearchService.matchCriteria`). Then it inserts ONE pending match per write (a narrow row of
 * `subscription_match_pending`, ids only) in the same transaction, the outbox: the subscribers' access check and the fan-out to
 * one notification per Subscription run off the write's critical path, in `SubscriptionMatchJob`
 * (as HAPI's SubscriptionMatcherInterceptor only submits a message). A write no criterion may
 * match inserts nothing. Deletes notify nothing (R4 rest-hook has no delete event). A node keeps a
 * type's candidate list for SUBSCRIPTION_CACHE_MS (its own Subscription writes refresh it at once)
 * and each Subscription's parsed criteria for as long as its criteria stay the same, so no
 * criteria is parsed per write.
 */
@Injectable()
export class SubscriptionMatchingListener implements WriteListener, OnModuleInit {
  readonly name = 'subscription-matching';
  readonly phase = 'pre-commit' as const;
  // Last: after the materializers, so a match sees what they wrote in this transaction.
  readonly order = 1000;
  private readonly logger = new Logger('SubscriptionMatching');
  private readonly candidatesByType = new Map<string, { list: Promise<Candidate[]>; until: number }>();
  /** Parsed criteria by Subscription id and criteria text (undefined: not a valid search any more); pruned at each refresh. */
  private readonly prepared = new Map<string, PreparedCriteria | undefined>();

  constructor(
    private readonly events: WriteEvents,
    private readonly registrations: SubscriptionRegistrations,
    private readonly access: SubscriberAccess,
    private readonly search: SearchService,
    private readonly pending: SubscriptionMatchesPending,
    @Inject(SUBSCRIPTION_CONFIG) private readonly config: SubscriptionConfig,
  ) {}

  onModuleInit(): void {
    this.events.register(this);
  }

  async handle({ tx, resourceType, id, after, session }: WriteEvent): Promise<void> {
    if (resourceType === 'Subscription') {
      // This node matches with the new registration as soon as it commits.
      session.afterCommit(async () => void this.candidatesByType.clear());
      return;
    }
    if (!after) return;
    // The cached list may hold a Subscription whose `end` has passed since it was read.
    const now = Date.now();
    const candidates = (await this.candidates(tx, resourceType)).filter((c) => !c.registration.endsAt || c.registration.endsAt.getTime() > now);
    if (!candidates.length) return;
    const started = process.hrtime.bigint();
    // Those the written version cannot satisfy are left out before any access is minted or SQL runs.
    const remaining = this.search.mayMatch(after as Resource, candidates);
    if (!remaining.length) return;
    const decided = remaining.filter((c) => c.criteria.prefilter.decidesAll);
    const undecided = remaining.filter((c) => !c.criteria.prefilter.decidesAll);
    // Criteria on more than the version's own index rows are tested here, on the version just
    // stored (the index holds current versions only, so the job could not test them later).
    const matched = undecided.length ? await this.matchInSql(tx, resourceType, id, undecided) : [];
    if (!decided.length && !matched.length) return;
    const versionId = (after as Resource).meta?.versionId ?? '';
    await this.pending.add(tx, { resourceType, id, versionId, candidates: decided.map((c) => c.registration.id), matched });
    this.logger.debug({ msg: 'subscription match enqueued', type: resourceType, candidates: candidates.length, accessLeft: decided.length, inSql: undecided.length, matched: matched.length, us: Number((process.hrtime.bigint() - started) / 1000n) });
  }

  /** The matching statement for `undecided`, each under its subscriber's access (a client that may no longer search the type matches nothing). */
  private async matchInSql(tx: EntityManager, resourceType: string, id: string, undecided: readonly Candidate[]): Promise<string[]> {
    const withAccess = await Promise.all(undecided.map(async (c) => ({ key: c.registration.id, criteria: c.criteria, ctx: await this.access.contextOf(c.registration.principal, resourceType) })));
    return this.search.matchCriteria(
      resourceType,
      id,
      withAccess.filter((c): c is typeof c & { ctx: NonNullable<typeof c.ctx> } => c.ctx !== undefined),
      tx,
    );
  }

  private candidates(tx: EntityManager, resourceType: string): Promise<Candidate[]> {
    const now = Date.now();
    const hit = this.candidatesByType.get(resourceType);
    if (hit && hit.until > now) return hit.list;
    const list = this.registrations.candidates(tx, resourceType).then((registrations) => this.withCriteria(resourceType, registrations));
    if (this.config.cacheMs > 0) this.candidatesByType.set(resourceType, { list, until: now + this.config.cacheMs });
    list.catch(() => this.candidatesByType.delete(resourceType));
    return list;
  }

  /** Each registration with its parsed criteria, reused while its criteria text stays the same. */
  private withCriteria(resourceType: string, registrations: SubscriptionRegistration[]): Candidate[] {
    const keep = new Set<string>();
    const out: Candidate[] = [];
    for (const registration of registrations) {
      const key = `${registration.id}\n${registration.criteria}`;
      keep.add(key);
      if (!this.prepared.has(key)) this.prepared.set(key, this.prepare(resourceType, registration.criteria));
      const criteria = this.prepared.get(key);
      if (criteria) out.push({ registration, criteria });
    }
    // Registrations of this type that are gone or changed leave the cache.
    for (const key of this.prepared.keys()) if (this.prepared.get(key)?.resourceType === resourceType && !keep.has(key)) this.prepared.delete(key);
    return out;
  }

  /** `query`: the registration's criteria after `Type?`. Criteria that no longer parse (a SearchParameter removed since) match nothing, as in SQL. */
  private prepare(resourceType: string, query: string): PreparedCriteria | undefined {
    try {
      return this.search.prepareCriteria(resourceType, query);
    } catch (err) {
      if (err instanceof FhirError) return undefined;
      throw err;
    }
  }
}

interface Candidate {
  registration: SubscriptionRegistration;
  criteria: PreparedCriteria;
}
