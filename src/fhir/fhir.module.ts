import { Module } from '@nestjs/common';
import { CapabilityStatementService } from './capability/capability-statement.service';
import { WriteExtensionsModule } from './pipeline/write-extensions.module';
import { StorageSessions } from './storage/storage-session';
import { SearchReindexer } from './search/search-reindexer';
import { ReindexContributors } from './search/reindex-contributors';
import { ResourceTypeHandlers } from './pipeline/resource-type-handler';
import { ResourceIndexer, ResourceRepository } from './storage/resource.repository';
import { ResourceMatcher } from './storage/resource-matcher';
import { EverythingOperation } from './operations/everything.operation';
import { MetaAddOperation, MetaDeleteOperation, MetaOperation } from './operations/meta.operation';
import { ValidateOperation } from './operations/validate.operation';
import { TransferCustodianOperation } from './operations/transfer-custodian.operation';
import { ResourceMetaRepository } from './storage/resource-meta.repository';
import { SearchCapabilityContributor } from './search/search-capability.contributor';
import { SearchIndexWriter } from './search/search-index.writer';
import { SearchParameterCheckingIndexer } from './search/search-parameter-checking.indexer';
import { SearchParameterSync } from './search/search-parameter.sync';
import { OperationRegistry } from './operations/operation.registry';
import { ReindexOperation } from './operations/reindex.operation';
import { SearchResourceMatcher } from './search/search-resource.matcher';
import { SearchService } from './search/search.service';
import { ResourceValidator } from './validation/resource.validator';

@Module({
  imports: [WriteExtensionsModule],
  providers: [
    StorageSessions,
    SearchReindexer,
    ReindexContributors,
    ResourceTypeHandlers,
    ResourceRepository,
    ResourceValidator,
    CapabilityStatementService,
    SearchService,
    SearchCapabilityContributor,
    SearchIndexWriter,
    SearchParameterSync,
    SearchParameterCheckingIndexer,
    // Other modules' work on writes runs as write listeners (write-events.ts), not in the indexer.
    { provide: ResourceIndexer, useExisting: SearchParameterCheckingIndexer },
    OperationRegistry,
    ReindexOperation,
    EverythingOperation,
    ValidateOperation,
    MetaOperation,
    MetaAddOperation,
    MetaDeleteOperation,
    TransferCustodianOperation,
    ResourceMetaRepository,
    { provide: ResourceMatcher, useClass: SearchResourceMatcher },
  ],
  exports: [ResourceMatcher, SearchService, StorageSessions, SearchReindexer, ReindexContributors, CapabilityStatementService, ResourceValidator, ResourceIndexer, OperationRegistry, ResourceRepository, ResourceTypeHandlers],
})
export class FhirModule {}
