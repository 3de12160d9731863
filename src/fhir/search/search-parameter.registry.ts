import { getSearchParameterDetails } from '@medplum/core';
import type { SearchParameter } from '@medplum/fhirtypes';
import { FhirDefinitions } from '../definitions/fhir-definitions';
import { branchesForType } from '../definitions/fhirpath-branches';
import { compositeComponentsOf } from './search-composite';
import type { CompositeComponentDef, IndexedParamType } from './search-parameter-types';

export type { CompositeComponentDef, IndexedParamType } from './search-parameter-types';

export interface SearchParamDef {
  code: string;
  type: IndexedParamType;
  expression: string;
  targets: string[];
  /** Parameters answered from the resource table itself, not the index tables. */
  column?: 'id' | 'last_updated';
  /** Canonical URL of a custom (shipped or stored) SearchParameter; R4 ones are implied by code. */
  url?: string;
  /** Composite parameters only (search.html#composite). */
  components?: CompositeComponentDef[];
  /** Token over ContactPoint (telecom, email, phone): indexed lower-cased, so searched lower-cased. */
  caseInsensitiveCode?: boolean;
  /** Number/quantity whose expression can reach a Range: its index has range rows (low, high). */
  rangeValues?: boolean;
  /** `_text` (the narrative) and `_content` (the whole resource): PostgreSQL full text over `search_text`. */
  fullText?: 'narrative' | 'content';
}

/** Whether a number/quantity parameter's elements can hold a Range (e.g. `probability[x]`: decimal | Range). */
function reachesRange(resourceType: string, sp: SearchParameter): boolean {
  if (sp.type !== 'number' && sp.type !== 'quantity') return false;
  if (/\bRange\b/.test(sp.expression ?? '')) return true;
  try {
    return (getSearchParameterDetails(resourceType, sp).elementDefinitions ?? []).some((e) => e.type?.some((t) => t.code === 'Range'));
  } catch {
    return false; // A path the definitions do not resolve: its values are indexed as they come.
  }
}

/** SEARCH_TEXT_LANGUAGE's default: no stemming or stop words, so any language (and codes) match word for word. */
export const DEFAULT_TEXT_LANGUAGE = 'simple';

/** R4 resources that have no narrative (not DomainResources), so no `_text`. */
const NOT_DOMAIN_RESOURCES = new Set(['Binary', 'Bundle', 'Parameters']);

/** Every branch selects ContactPoints (`X.telecom`, `X.telecom.where(system='email')`). */
function selectsContactPoints(expression: string): boolean {
  return expression.split('|').every((branch) => /\.telecom(\.where\(.*\))?\s*$/.test(branch.trim()));
}

const INDEXED = new Set<string>(['token', 'string', 'date', 'number', 'quantity', 'reference', 'uri', 'composite']);
/** Medplum-specific parameters in the definitions that are not part of R4. */
const NOT_R4 = new Set(['_project', '_compartment']);

const byType = new Map<string, Map<string, SearchParamDef>>();

/**
 * The R4 search parameters this server indexes and answers, per resource type: every R4
 * SearchParameter of a type we can index (special is not supported and not advertised; a composite
 * whose components cannot be resolved is left out).
 */
export function r4SearchParamsOf(resourceType: string): Map<string, SearchParamDef> {
  let map = byType.get(resourceType);
  if (!map) {
    map = new Map();
    const all: Record<string, SearchParameter> = FhirDefinitions.get().searchParameters(resourceType);
    // The definitions list no per-type copy of `_text` (DomainResource) and `_content` (Resource).
    if (Object.keys(all).length) {
      map.set('_content', { code: '_content', type: 'string', expression: '', targets: [], fullText: 'content' });
      if (!NOT_DOMAIN_RESOURCES.has(resourceType)) map.set('_text', { code: '_text', type: 'string', expression: '', targets: [], fullText: 'narrative' });
    }
    for (const [code, sp] of Object.entries(all)) {
      if (NOT_R4.has(code) || !sp.expression || !INDEXED.has(sp.type as string)) continue;
      const components = sp.type === 'composite' ? compositeComponentsOf(sp) : undefined;
      if (sp.type === 'composite' && !components) continue;
      map.set(code, {
        code,
        type: sp.type as IndexedParamType,
        expression: branchesForType(sp.expression, resourceType),
        targets: (sp.target ?? []) as string[],
        ...(code === '_id' ? { column: 'id' as const } : code === '_lastUpdated' ? { column: 'last_updated' as const } : {}),
        ...(components ? { components } : {}),
        ...(sp.type === 'token' && selectsContactPoints(sp.expression) ? { caseInsensitiveCode: true } : {}),
        ...(reachesRange(resourceType, sp) ? { rangeValues: true } : {}),
      });
    }
    byType.set(resourceType, map);
  }
  return map;
}

// Custom parameters (fhir-profiles/ and stored SearchParameters), replaced as a whole by
// SearchParameterSync on start and whenever any node commits a SearchParameter change.
let custom = new Map<string, Map<string, SearchParamDef>>();
let merged = new Map<string, Map<string, SearchParamDef>>();

/**
 * Every search parameter this server indexes and answers for a type: the R4 ones plus the custom
 * ones in force (which never redefine an R4 code). Synchronous: the custom layer is in memory.
 */
export function searchParamsOf(resourceType: string): Map<string, SearchParamDef> {
  let map = merged.get(resourceType);
  if (!map) {
    const extra = custom.get(resourceType);
    map = extra?.size ? new Map([...r4SearchParamsOf(resourceType), ...extra]) : r4SearchParamsOf(resourceType);
    merged.set(resourceType, map);
  }
  return map;
}

/** Replaces the custom layer (built and checked by custom-search-parameters.ts). */
export function setCustomSearchParams(layer: Map<string, Map<string, SearchParamDef>>): void {
  custom = layer;
  merged = new Map();
}

/** The definition of a custom (already checked) SearchParameter for one of its base types. */
export function searchParamDefOf(sp: SearchParameter, resourceType: string): SearchParamDef {
  return {
    code: sp.code!,
    type: sp.type as IndexedParamType,
    expression: branchesForType(sp.expression!, resourceType).trim(),
    targets: (sp.target ?? []) as string[],
    ...(sp.url ? { url: sp.url } : {}),
    ...(sp.type === 'token' && selectsContactPoints(sp.expression!) ? { caseInsensitiveCode: true } : {}),
    ...(reachesRange(resourceType, sp) ? { rangeValues: true } : {}),
  };
}

