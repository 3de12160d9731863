import { Inject, Injectable, Logger, OnModuleInit } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { SystemAccess } from '../fhir/pipeline/system-access';
import type { Principal } from '../fhir/pipeline/principal';
import { StorageSessions } from '../fhir/storage/storage-session';
import { JobQueue, QueuedJob } from '../jobs/job-queue';
import type { AccessContext } from '../fhir/pipeline/access-context';
import { IDENTITY_CONFIG, IdentityConfig } from './identity-config';
import { IdentityMatchingJob } from './identity-matching.job';
import { PatientDemographicsRepository } from './patient-demographics.repository';

/** The outbox queue of the batch match: one job per page of Patients (data: the page's start id only). */
export const IDENTITY_BATCH_MATCH_QUEUE = 'identity.batch-match';

/** Patients per page job: one system-access mint and one page query per this many matches. */
export const BATCH_PAGE_SIZE = 500;

export interface IdentityBatchMatchJobData {
  /** The page starts after this Patient id (null: the first page). */
  after: string | null;
  /** Patients per page (default BATCH_PAGE_SIZE). */
  pageSize?: number;
}

/**
 * The batch match (docs/identity.md): every Patient in `patient_demographics` matched as matching
 * after write would match it, for a bulk load made with IDENTITY_MATCH_ON_WRITE=off (or a rematch).
 * A page job walks the ids in order (primary key), enqueues the next page first (so pages run on
 * every worker at once) and matches each Patient of its own page in a transaction of its own, with
 * the same blocking-key locks as the job after write, so it runs safely beside live registrations.
 * One `identity-matching` system-access mint (one audit record) per page, not per Patient.
 */
@Injectable()
export class IdentityBatchMatchJob implements OnModuleInit {
  private readonly logger = new Logger('IdentityBatchMatch');

  constructor(
    private readonly jobs: JobQueue,
    private readonly sessions: StorageSessions,
    private readonly system: SystemAccess,
    private readonly demographics: PatientDemographicsRepository,
    private readonly matching: IdentityMatchingJob,
    @Inject(IDENTITY_CONFIG) private readonly config: IdentityConfig,
  ) {}

  async onModuleInit(): Promise<void> {
    this.jobs.define(IDENTITY_BATCH_MATCH_QUEUE, { retryLimit: 5, retryDelaySeconds: 1, retryBackoff: true, retryDelayMaxSeconds: 60, expireInSeconds: 900 });
    await this.jobs.work<IdentityBatchMatchJobData>(IDENTITY_BATCH_MATCH_QUEUE, (job) => this.run(job), { concurrency: 2 });
  }

  /** Starts a batch match over every indexed Patient, in `tx` (the outbox: it runs once `tx` commits). */
  async start(tx: EntityManager, pageSize = BATCH_PAGE_SIZE): Promise<string | null> {
    return this.jobs.enqueue<IdentityBatchMatchJobData>(tx, IDENTITY_BATCH_MATCH_QUEUE, { after: null, pageSize });
  }

  private get exchange(): Principal {
    return { kind: 'system', clientId: 'system:identity-matching', organization: this.config.exchangeOrganization, scopes: [] };
  }

  async run(job: QueuedJob<IdentityBatchMatchJobData>): Promise<void> {
    const started = Date.now();
    const pageSize = job.data.pageSize ?? BATCH_PAGE_SIZE;
    let ctx: AccessContext | undefined;
    const page = await this.sessions.run({ transactional: true }, async ({ tx }) => {
      ctx = await this.system.mint('identity-matching', this.exchange);
      const ids = await this.demographics.patientIdsAfter(ctx!, tx, job.data.after, pageSize);
      // The next page first: it commits with this read, so a crash after it loses no page.
      if (ids.length === pageSize) await this.jobs.enqueue<IdentityBatchMatchJobData>(tx, IDENTITY_BATCH_MATCH_QUEUE, { after: ids[ids.length - 1], pageSize });
      return ids;
    });
    // Set-based: the page's blocking candidates in one statement, scored in bulk; the locked
    // per-Patient match only for the Patients it would change.
    const outcome = await this.matching.matchMany(ctx!, page);
    // Ids, counts and timing only.
    this.logger.log({ msg: 'identity batch match page', job: job.id, patients: page.length, ...outcome, ms: Date.now() - started });
  }
}
