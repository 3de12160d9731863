import { Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import type { AccessContext } from '../pipeline/access-context';
import { ResourceMatcher } from '../storage/resource-matcher';
import { SearchService } from './search.service';

/** Conditional create/update/delete and conditional references use full FHIR search criteria. */
@Injectable()
export class SearchResourceMatcher extends ResourceMatcher {
  constructor(private readonly search: SearchService) {
    super();
  }

  matchIds(ctx: AccessContext, resourceType: string, criteria: string, tx: EntityManager): Promise<string[]> {
    return this.search.matchIds(ctx, resourceType, criteria, tx);
  }
}
