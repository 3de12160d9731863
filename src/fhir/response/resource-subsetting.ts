import type { Coding, Resource } from '@medplum/fhirtypes';
import { FhirError } from '../../common/fhir-error';
import { FhirDefinitions } from '../definitions/fhir-definitions';

export type SummaryMode = 'true' | 'false' | 'text' | 'data' | 'count';

const SUBSETTED: Coding = {
  system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue',
  code: 'SUBSETTED',
  display: 'subsetted',
};
const ALWAYS_KEPT = ['resourceType', 'id', 'meta'];

export function parseSummary(raw: string | undefined, allowCount: boolean): SummaryMode | undefined {
  if (raw === undefined) return undefined;
  const allowed = allowCount ? ['true', 'false', 'text', 'data', 'count'] : ['true', 'false', 'text', 'data'];
  if (!allowed.includes(raw)) {
    throw FhirError.badRequest(`_summary must be one of ${allowed.join(', ')}; got '${raw}'`, ['_summary']);
  }
  return raw as SummaryMode;
}

export function parseElements(raw: string | undefined): string[] | undefined {
  if (raw === undefined) return undefined;
  const names = raw.split(',').map((s) => s.trim()).filter(Boolean);
  const bad = names.find((n) => !/^[A-Za-z][A-Za-z0-9]*(\.[A-Za-z][A-Za-z0-9]*)?$/.test(n));
  if (bad !== undefined) throw FhirError.badRequest(`_elements has an invalid element name '${bad}'`, ['_elements']);
  // "Patient.name" form is accepted and means the same as "name".
  return names.map((n) => n.split('.').pop()!);
}

/** `_summary` and `_elements` (search.html#summary, #elements): a subset marked SUBSETTED. */
export function subsetResource(resource: Resource, summary?: SummaryMode, elements?: string[]): Resource {
  const defs = FhirDefinitions.get();
  const type = resource.resourceType;
  let keep: Set<string> | undefined;
  let drop: Set<string> | undefined;
  if (elements?.length) {
    keep = new Set([...ALWAYS_KEPT, ...defs.mandatoryElementsOf(type), ...elements]);
  } else if (summary === 'true') {
    keep = new Set([...ALWAYS_KEPT, 'implicitRules', ...defs.summaryElementsOf(type)]);
  } else if (summary === 'text') {
    keep = new Set([...ALWAYS_KEPT, 'text', ...defs.mandatoryElementsOf(type)]);
  } else if (summary === 'data') {
    drop = new Set(['text']);
  } else {
    return resource;
  }
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(resource)) {
    const name = choiceBase(key, type);
    if (keep ? keep.has(key) || keep.has(name) : !drop!.has(key)) out[key] = value;
  }
  const meta = { ...(resource.meta ?? {}) };
  meta.tag = [...(meta.tag ?? []).filter((t) => t.code !== SUBSETTED.code), SUBSETTED];
  out.meta = meta;
  return out as unknown as Resource;
}

/** `valueQuantity` belongs to the element `value[x]`, listed as `value`. */
function choiceBase(key: string, _type: string): string {
  const m = /^([a-z][A-Za-z0-9]*?)([A-Z][A-Za-z0-9]*)$/.exec(key);
  return m ? m[1] : key;
}
