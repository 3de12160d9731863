import { Injectable, OnModuleInit } from '@nestjs/common';
import type { CapabilityStatementRest } from '@medplum/fhirtypes';
import { CapabilityContributor, CapabilityStatementService } from '../capability/capability-statement.service';
import { FhirDefinitions } from '../definitions/fhir-definitions';
import { searchParamsOf } from './search-parameter.registry';

/** Lists, per type, exactly the search parameters this server indexes and answers. */
@Injectable()
export class SearchCapabilityContributor implements CapabilityContributor, OnModuleInit {
  constructor(private readonly capabilities: CapabilityStatementService) {}

  onModuleInit(): void {
    this.capabilities.register(this);
  }

  contribute(rest: CapabilityStatementRest): void {
    for (const resource of rest.resource ?? []) {
      resource.interaction = [...(resource.interaction ?? []), { code: 'search-type' }];
      // R4 parameters shared by several types have one canonical URL (e.g. clinical-code), so take it from the definitions.
      const r4 = FhirDefinitions.get().searchParameters(resource.type as string);
      resource.searchParam = [...searchParamsOf(resource.type as string).values()].map((d) => ({
        name: d.code,
        type: d.type,
        definition: d.url ?? r4[d.code]?.url ?? `http://hl7.org/fhir/SearchParameter/${resource.type}-${d.code}`,
      }));
      resource.searchInclude = ['*', ...[...searchParamsOf(resource.type as string).values()].filter((d) => d.type === 'reference').map((d) => `${resource.type}:${d.code}`)];
      resource.searchRevInclude = ['*'];
      resource.conditionalCreate = true;
      resource.conditionalUpdate = true;
      resource.conditionalDelete = 'multiple';
    }
    rest.interaction = [...(rest.interaction ?? []), { code: 'search-system' }, { code: 'batch' }, { code: 'transaction' }];
  }
}
