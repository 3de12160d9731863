import { Inject, Injectable, OnModuleInit } from '@nestjs/common';
import type { Patient } from '@medplum/fhirtypes';
import { APP_CONFIG, AppConfig } from '../config/app.config';
import type { EntityManager } from 'typeorm';
import { WriteEvent, WriteEvents, WriteListener } from '../fhir/pipeline/write-events';
import { ReindexContributor, ReindexContributors, ReindexedResource } from '../fhir/search/reindex-contributors';
import { demographicsOf } from './demographics';
import { IdentityMatchingJob } from './identity-matching.job';
import { PatientDemographicsRepository } from './patient-demographics.repository';

/**
 * Keeps `patient_demographics` in step with each Patient write, in its transaction (pre-commit),
 * so matching never sees a Patient that was rolled back, nor misses one that committed. A
 * deleted Patient leaves the index (and so every future match). Each create, update and delete
 * enqueues its matching job in the same transaction (the outbox); for a delete the job unlinks.
 * `$reindex` / `npm run reindex` of Patients rebuilds the rows too (a ReindexContributor): Patients
 * stored before the identity module's migration enter the index that way, then a batch match
 * (`Person/$rematch`) links them.
 */
@Injectable()
export class PatientDemographicsListener implements WriteListener, ReindexContributor, OnModuleInit {
  readonly name = 'identity-demographics';
  readonly phase = 'pre-commit' as const;
  // After consent's link materializer (200): independent of it, ordered for a stable sequence.
  readonly order = 300;
  readonly resourceTypes = ['Patient'];

  constructor(
    private readonly events: WriteEvents,
    private readonly reindexing: ReindexContributors,
    private readonly demographics: PatientDemographicsRepository,
    private readonly matching: IdentityMatchingJob,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  onModuleInit(): void {
    this.events.register(this);
    this.reindexing.register(this);
  }

  /** Rebuilt from the stored current version, under its custodian; no matching job (a batch match or rematch follows). */
  async reindex(tx: EntityManager, _resourceType: string, resources: readonly ReindexedResource[]): Promise<void> {
    for (const r of resources) await this.demographics.save(tx, r.id, r.custodianOrg, demographicsOf(r.content as Patient));
  }

  async handle({ tx, id, after, before, principal }: WriteEvent): Promise<void> {
    if (!after) {
      await this.demographics.remove(tx, id);
      // Its job takes it out of its Person (the Person is written under the system context, not the deleter's).
      if (this.config.identityMatchOnWrite) await this.matching.enqueue(tx, id);
      return;
    }
    // The custodian: kept from the stored version; on create, the writer's organization.
    const custodian = before && !before.deleted ? (before.custodianOrg ?? null) : (principal.organization ?? null);
    await this.demographics.save(tx, id, custodian, demographicsOf(after as Patient));
    // Matching runs after the commit, from the outbox: the write's response does not wait for it.
    // IDENTITY_MATCH_ON_WRITE=off (bulk loads): the index is kept, matching waits for a batch run.
    if (this.config.identityMatchOnWrite) await this.matching.enqueue(tx, id);
  }
}
