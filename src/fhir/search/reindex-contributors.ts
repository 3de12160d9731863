import { Injectable } from '@nestjs/common';
import type { Resource } from '@medplum/fhirtypes';
import type { EntityManager } from 'typeorm';

/** A current resource as a reindex batch read it. */
export interface ReindexedResource {
  id: string;
  content: Resource;
  custodianOrg: string | null;
}

/**
 * A module's own rows derived from stored resources (e.g. identity's `patient_demographics`),
 * rebuilt by `$reindex` / `npm run reindex` in the batch's transaction beside the search index
 * rows: so resources stored before the module (or its migration) existed enter its tables.
 */
export interface ReindexContributor {
  /** For logs and the duplicate check. */
  readonly name: string;
  readonly resourceTypes: readonly string[];
  reindex(tx: EntityManager, resourceType: string, resources: readonly ReindexedResource[]): Promise<void>;
}

@Injectable()
export class ReindexContributors {
  private readonly contributors: ReindexContributor[] = [];

  register(contributor: ReindexContributor): void {
    if (this.contributors.some((c) => c.name === contributor.name)) throw new Error(`Reindex contributor ${contributor.name} is registered twice`);
    this.contributors.push(contributor);
  }

  /** Runs every contributor of the type on a batch's resources of that type. */
  async reindex(tx: EntityManager, resourceType: string, resources: readonly ReindexedResource[]): Promise<void> {
    if (!resources.length) return;
    for (const c of this.contributors) if (c.resourceTypes.includes(resourceType)) await c.reindex(tx, resourceType, resources);
  }
}
