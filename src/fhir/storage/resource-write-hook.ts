import type { Resource } from '@medplum/fhirtypes';
import type { EntityManager } from 'typeorm';
import { ResourceIndexer } from './resource.repository';

/**
 * Work another module must do in the transaction of every write of some resource types (the
 * consent module materializes Consent decisions). Runs after the rows are written and before the
 * search index rows; a FhirError rolls the write back.
 */
export abstract class ResourceWriteHook {
  abstract handles(resourceType: string): boolean;
  /** `resource` undefined: the resource was deleted. `firstVersion`: a create (nothing earlier to undo). */
  abstract written(tx: EntityManager, resourceType: string, id: string, resource: Resource | undefined, firstVersion?: boolean): Promise<void>;
}

/** The storage's ResourceIndexer with the write hooks of other modules in front of it. */
export class HookedResourceIndexer extends ResourceIndexer {
  constructor(
    private readonly inner: ResourceIndexer,
    private readonly hooks: readonly ResourceWriteHook[],
  ) {
    super();
  }

  async index(tx: EntityManager, resourceType: string, id: string, resource: Resource | undefined, replacing: boolean): Promise<void> {
    for (const hook of this.hooks) if (hook.handles(resourceType)) await hook.written(tx, resourceType, id, resource, !replacing);
    await this.inner.index(tx, resourceType, id, resource, replacing);
  }

  override indexesTogether(resourceType: string): boolean {
    return this.inner.indexesTogether(resourceType);
  }

  override async indexCreated(tx: EntityManager, created: readonly Resource[]): Promise<void> {
    for (const resource of created) {
      for (const hook of this.hooks) if (hook.handles(resource.resourceType)) await hook.written(tx, resource.resourceType, resource.id!, resource, true);
    }
    await this.inner.indexCreated(tx, created);
  }
}
