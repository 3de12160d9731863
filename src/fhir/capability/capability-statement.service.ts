import { Inject, Injectable } from '@nestjs/common';
import type { ResourceType, CapabilityStatement, CapabilityStatementRest, CapabilityStatementRestResource } from '@medplum/fhirtypes';
import { APP_CONFIG, AppConfig } from '../../config/app.config';
import { FhirDefinitions } from '../definitions/fhir-definitions';
import { ProfileRegistry } from '../validation/profile.registry';

export const SERVER_VERSION = '0.1.0';

/**
 * What the server does beyond R4 that a client cannot read from the structured elements. R4
 * defines conditional references for transactions only and has no element to say a server takes
 * them elsewhere, so the extension is stated here (README, "Conditional references").
 */
const REST_DOCUMENTATION =
  'Conditional references (`Type?criteria`) are resolved in every write, not only in transactions (an extension to R4 http.html#trules): ' +
  'create, update, conditional create and update, the result of a PATCH, and each batch entry. The criteria are searched with the client\'s own access; ' +
  'exactly one match is stored as `Type/id`, none or several answer 412 naming the element, and a search string is never stored as a reference.';

/**
 * Contributions other modules make to the CapabilityStatement (security, search parameters,
 * operations), so it lists exactly what really works.
 */
export interface CapabilityContributor {
  contribute(rest: CapabilityStatementRest): void;
}

@Injectable()
export class CapabilityStatementService {
  private readonly contributors: CapabilityContributor[] = [];
  private cached?: CapabilityStatement;
  private readonly profiles = new ProfileRegistry();

  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {}

  register(contributor: CapabilityContributor): void {
    this.contributors.push(contributor);
    this.cached = undefined;
  }

  /** What it lists changed (a SearchParameter or an operation was added): rebuild on next get. */
  invalidate(): void {
    this.cached = undefined;
  }

  get(): CapabilityStatement {
    this.cached ??= this.build();
    return this.cached;
  }

  private build(): CapabilityStatement {
    const defs = FhirDefinitions.get();
    const resource: CapabilityStatementRestResource[] = defs.storableTypes.map((type) => {
      const supportedProfile = this.profiles.requiredFor(type);
      return {
        type: type as ResourceType,
        profile: `http://hl7.org/fhir/StructureDefinition/${type}`,
        ...(supportedProfile.length ? { supportedProfile } : {}),
        interaction: ['read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'history-type', 'create'].map((code) => ({
          code: code as 'read',
        })),
        versioning: 'versioned-update',
        readHistory: true,
        updateCreate: true,
        conditionalCreate: false,
        conditionalUpdate: false,
        conditionalDelete: 'not-supported',
      };
    });
    const rest: CapabilityStatementRest = {
      mode: 'server',
      documentation: REST_DOCUMENTATION,
      resource,
      interaction: [{ code: 'history-system' }],
    };
    for (const c of this.contributors) c.contribute(rest);
    return {
      resourceType: 'CapabilityStatement',
      status: 'active',
      date: '2026-11-24',
      publisher: 'Regional FHIR exchange',
      kind: 'instance',
      software: { name: 'fhir-hie-server', version: SERVER_VERSION },
      implementation: { description: 'Regional health information exchange', url: this.config.fhirBaseUrl },
      fhirVersion: '4.0.1',
      format: ['application/fhir+json', 'json', 'application/fhir+xml', 'xml'],
      // PATCH takes JSON Patch and FHIRPath Patch (a Parameters resource in FHIR JSON).
      patchFormat: ['application/json-patch+json', 'application/fhir+json'],
      rest: [rest],
    };
  }
}
