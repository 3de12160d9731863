import { Inject, Injectable, Logger, OnModuleInit } from '@nestjs/common';
import type { Parameters, Person } from '@medplum/fhirtypes';
import type { EntityManager } from 'typeorm';
import type { AccessContext } from '../fhir/pipeline/access-context';
import { SystemAccess } from '../fhir/pipeline/system-access';
import type { InteractionResult, OperationInteraction } from '../fhir/pipeline/interaction';
import type { Principal } from '../fhir/pipeline/principal';
import { FhirOperation } from '../fhir/operations/fhir-operation';
import { shippedOperationDefinition } from '../fhir/operations/operation-definitions';
import { OperationRegistry } from '../fhir/operations/operation.registry';
import { StorageSession, StorageSessions } from '../fhir/storage/storage-session';
import { JobQueue, QueuedJob } from '../jobs/job-queue';
import { IDENTITY_CONFIG, IdentityConfig } from './identity-config';
import { IdentityLinkRepository } from './identity-link.repository';
import { IdentityMatchingJob } from './identity-matching.job';
import { scoreMatch } from './match-scorer';
import { PatientDemographicsRepository } from './patient-demographics.repository';
import { linkedPatientsOf, PersonLinks } from './person-links';

/** The outbox queue of a rematch (data: where the pass is, never demographics). */
export const IDENTITY_REMATCH_QUEUE = 'identity.rematch';
/** Patients per job: each job does one page and enqueues the next, so a run of any size stays bounded. */
export const REMATCH_PAGE = 500;

export interface IdentityRematchJobData {
  /** `links`: recheck automatic links; `patients`: match every indexed Patient again. */
  phase: 'links' | 'patients';
  /** The last Patient id of the previous page (keyset). */
  after?: string;
}

/**
 * Rematch after the thresholds change (docs/identity.md, Rematch): an HIE admin's
 * `POST Person/$rematch` enqueues, in its transaction, a pass in two phases, one page per job:
 *
 * 1. every **automatic** link (`identity_person_link.decided_by` `auto`) is scored again against the
 *    other Patients of its Person under the current thresholds; one that is no longer a certain match
 *    with any of them leaves the Person (a threshold decision, so no NO_MATCH is recorded). Links an
 *    admin confirmed (level4) are never undone by a threshold.
 * 2. every Patient of the demographics index is matched again (an `identity.match` job each), so pairs
 *    that became certain are linked and probable ones get their review Task (once per pair).
 */
@Injectable()
export class IdentityRematchJob implements OnModuleInit {
  private readonly logger = new Logger('IdentityRematch');

  constructor(
    private readonly jobs: JobQueue,
    private readonly sessions: StorageSessions,
    private readonly system: SystemAccess,
    private readonly demographics: PatientDemographicsRepository,
    private readonly persons: PersonLinks,
    private readonly links: IdentityLinkRepository,
    private readonly matching: IdentityMatchingJob,
    @Inject(IDENTITY_CONFIG) private readonly config: IdentityConfig,
  ) {}

  async onModuleInit(): Promise<void> {
    this.jobs.define(IDENTITY_REMATCH_QUEUE, { retryLimit: 5, retryDelaySeconds: 1, retryBackoff: true, retryDelayMaxSeconds: 60, expireInSeconds: 600 });
    await this.jobs.work<IdentityRematchJobData>(IDENTITY_REMATCH_QUEUE, (job) => this.run(job));
  }

  /** Starts a pass in the caller's transaction (the outbox). */
  enqueue(tx: EntityManager): Promise<string | null> {
    return this.jobs.enqueue<IdentityRematchJobData>(tx, IDENTITY_REMATCH_QUEUE, { phase: 'links' });
  }

  private get exchange(): Principal {
    return { kind: 'system', clientId: 'system:identity-matching', organization: this.config.exchangeOrganization, scopes: [] };
  }

  async run(job: QueuedJob<IdentityRematchJobData>): Promise<void> {
    const started = Date.now();
    const outcome = await this.sessions.run({ transactional: true }, async ({ tx }) => {
      const ctx = await this.system.mint('identity-matching', this.exchange);
      const page = job.data.phase === 'links' ? await this.recheckLinks(ctx, tx, job.data.after) : await this.matchAgain(ctx, tx, job.data.after);
      // The next page (or phase) in the same transaction: a crash repeats this page, never skips one.
      const next: IdentityRematchJobData | undefined = page.last ? { phase: job.data.phase, after: page.last } : job.data.phase === 'links' ? { phase: 'patients' } : undefined;
      if (next) await this.jobs.enqueue<IdentityRematchJobData>(tx, IDENTITY_REMATCH_QUEUE, next);
      return page;
    });
    this.logger.log({ msg: 'identity rematch', job: job.id, phase: job.data.phase, seen: outcome.seen, unlinked: outcome.unlinked, ms: Date.now() - started });
  }

  private async recheckLinks(ctx: AccessContext, tx: EntityManager, after = ''): Promise<{ seen: number; unlinked: number; last?: string }> {
    const rows = await this.links.automaticLinksAfter(tx, after, REMATCH_PAGE);
    let unlinked = 0;
    for (const row of rows) if (await this.recheck(ctx, tx, row.patient_id, row.person_id)) unlinked++;
    return { seen: rows.length, unlinked, last: rows.length === REMATCH_PAGE ? rows[rows.length - 1].patient_id : undefined };
  }

  /** Takes the Patient out of its Person when no other Patient there is a certain match any more. */
  private async recheck(ctx: AccessContext, tx: EntityManager, patientId: string, personId: string): Promise<boolean> {
    await this.persons.lock(tx, personId);
    const state = await this.persons.read(ctx, tx, personId);
    const others = linkedPatientsOf(state.person).filter((p) => p !== patientId);
    const self = await this.demographics.get(ctx, tx, patientId);
    if (!self || !state.current) return false;
    for (const other of others) {
      const d = await this.demographics.get(ctx, tx, other);
      if (d && scoreMatch(self, d, this.config).grade === 'certain') return false;
    }
    const link: Person['link'] = (state.person.link ?? []).filter((l) => l.target?.reference !== `Patient/${patientId}`);
    // A Person left without links is kept (its history), inactive, as after an admin's $unlink.
    await this.persons.write(ctx, tx, state, { ...state.person, link, ...(link.length ? {} : { active: false }) });
    await this.links.unlinkPatient(tx, patientId, personId);
    return true;
  }

  private async matchAgain(ctx: AccessContext, tx: EntityManager, after = ''): Promise<{ seen: number; unlinked: number; last?: string }> {
    const ids = await this.demographics.patientIdsAfter(ctx, tx, after, REMATCH_PAGE);
    for (const id of ids) await this.matching.enqueue(tx, id);
    return { seen: ids.length, unlinked: 0, last: ids.length === REMATCH_PAGE ? ids[ids.length - 1] : undefined };
  }
}

/**
 * `POST Person/$rematch` (HIE admins): starts a rematch under the thresholds the server runs with
 * now (change `config/identity.json` and restart first). Asynchronous: the pass runs as outbox jobs
 * (`identity.rematch`); the answer names the job. Audited as an operation record.
 */
@Injectable()
export class PersonRematchOperation extends FhirOperation implements OnModuleInit {
  readonly name = 'rematch';
  readonly definition = shippedOperationDefinition('person-rematch');
  readonly levels = ['type'] as const;
  override readonly resourceTypes = ['Person'];
  readonly affectsState = true;
  readonly roles = ['admin'] as const;

  constructor(
    private readonly operations: OperationRegistry,
    private readonly rematch: IdentityRematchJob,
  ) {
    super();
  }

  onModuleInit(): void {
    this.operations.register(this);
  }

  async execute(_ctx: AccessContext, _i: OperationInteraction, { tx }: StorageSession): Promise<InteractionResult> {
    const job = await this.rematch.enqueue(tx);
    const parameters: Parameters = { resourceType: 'Parameters', parameter: [{ name: 'job', valueString: job ?? '' }] };
    return { status: 202, resource: parameters, touched: [] };
  }
}
