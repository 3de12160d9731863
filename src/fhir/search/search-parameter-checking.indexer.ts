import { Injectable } from '@nestjs/common';
import type { Resource, SearchParameter } from '@medplum/fhirtypes';
import type { EntityManager } from 'typeorm';
import { ResourceIndexer } from '../storage/resource.repository';
import { SearchIndexWriter } from './search-index.writer';
import { SearchParameterSync } from './search-parameter.sync';

/**
 * The ResourceIndexer the storage uses: indexes every write with SearchIndexWriter and, for a
 * SearchParameter, first checks in the write's transaction that this server can apply it (a 4xx
 * rolls the write back) and has the registry reloaded after commit.
 */
@Injectable()
export class SearchParameterCheckingIndexer extends ResourceIndexer {
  constructor(
    private readonly writer: SearchIndexWriter,
    private readonly searchParameters: SearchParameterSync,
  ) {
    super();
  }

  async index(tx: EntityManager, resourceType: string, id: string, resource: Resource | undefined, replacing: boolean): Promise<void> {
    if (resourceType === 'SearchParameter') await this.searchParameters.checkWrite(tx, id, resource as SearchParameter | undefined);
    await this.writer.index(tx, resourceType, id, resource, replacing);
  }

  /** A SearchParameter's check reads the stored ones, so each is written alone (in order). */
  override indexesTogether(resourceType: string): boolean {
    return resourceType !== 'SearchParameter';
  }

  override async indexCreated(tx: EntityManager, created: readonly Resource[]): Promise<void> {
    if (created.some((r) => r.resourceType === 'SearchParameter')) return super.indexCreated(tx, created);
    await this.writer.indexCreated(tx, created);
  }
}
