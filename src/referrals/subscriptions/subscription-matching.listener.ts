import { Inject, Injectable, Logger, OnModuleInit } from '@nestjs/common';
import type { Resource } from '@medplum/fhirtypes';
import type { EntityManager } from 'typeorm';
import { FhirError } from '../../common/fhir-error';
import { WriteEvent, WriteEvents, WriteListener } from '../../fhir/pipeline/write-events';
import { PreparedCriteria, SearchService } from '../../fhir/search/search.service';
import { JobQueue } from '../../jobs/job-queue';
import { SubscriberAccess } from './subscriber-access';
import { SUBSCRIPTION_CONFIG, SubscriptionConfig } from './subscription-config';
import { SubscriptionRegistration, SubscriptionRegistrations } from './subscription-registration.repository';

/** The outbox queue of rest-hook notifications (data: ids only). */
export const SUBSCRIPTION_NOTIFY_QUEUE = 'subscription.notify';

export interface NotificationJobData {
  subscriptionId: string;
  resourceType: string;
  id: string;
  versionId: string;
}

/**
 * Matches every committed create and update against the active rest-hook Subscriptions of its
 * type, in the write's transaction (pre-commit), each under its owning client's own access, in one
 * statement for all of them (`SearchService.matchEach`), and enqueues one notification job per
 * match in the same transaction (the outbox): a notification exists exactly when the write
 * committed. Deletes notify nothing (R4 rest-hook has no delete event). A node keeps a type's
 * candidate list for SUBSCRIPTION_CACHE_MS (its own Subscription writes refresh it at once) and
 * each Subscription's parsed criteria for as long as its criteria stay the same, so no criteria is
 * parsed per write; candidates whose criteria the written resource's own index rows cannot
 * satisfy are dropped in memory before SQL (`CriteriaPrefilter`, exact clauses only). The worker
 * drops a notification whose Subscription is gone or off by the time it runs.
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
    private readonly jobs: JobQueue,
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
    const candidates = await this.candidates(tx, resourceType);
    if (!candidates.length) return;
    const started = process.hrtime.bigint();
    // Those the written version cannot satisfy are left out before any access is minted or SQL runs.
    const remaining = this.search.mayMatch(after as Resource, candidates);
    if (!remaining.length) return;
    const withAccess = await Promise.all(remaining.map(async (c) => ({ key: c.registration.id, criteria: c.criteria, ctx: await this.access.contextOf(c.registration.principal, resourceType) })));
    const outcome = await this.search.matchEach(
      after as Resource,
      id,
      withAccess.filter((c): c is typeof c & { ctx: NonNullable<typeof c.ctx> } => c.ctx !== undefined),
      tx,
    );
    const versionId = (after as Resource).meta?.versionId ?? '';
    await this.jobs.enqueueMany<NotificationJobData>(tx, SUBSCRIPTION_NOTIFY_QUEUE, outcome.matched.map((subscriptionId) => ({ subscriptionId, resourceType, id, versionId })));
    this.logger.debug({ msg: 'subscription match', type: resourceType, candidates: candidates.length, accessOnly: outcome.accessOnly.length, inSql: outcome.inSql.length, matched: outcome.matched.length, us: Number((process.hrtime.bigint() - started) / 1000n) });
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
