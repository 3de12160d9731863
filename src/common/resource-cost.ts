import { FhirError } from './fhir-error';
import { JsonPlace, pathOf } from './json-shape';

export interface ResourceCostLimits {
  /** Most elements in any one array of a resource (`Patient.name`, `Provenance.target`). */
  maxArrayLength: number;
  /** Most JSON values (objects, arrays, primitives) in one resource: bounds the validation work. */
  maxElements: number;
  /** Most search index rows one resource version may have. */
  maxIndexRows: number;
}

/** The defaults: above the largest R4 example and Synthea resources (docs/security.md). */
export const DEFAULT_RESOURCE_COST: ResourceCostLimits = { maxArrayLength: 10_000, maxElements: 100_000, maxIndexRows: 20_000 };

/**
 * Refuses a resource whose size alone would make validating and indexing it costly (one Patient
 * with 80,000 names held the event loop for seconds and 450 MB), before any of that work starts: one
 * walk that stops at the first limit passed. 413 `too-costly`, naming the limit and its setting.
 * Returns its size: the number of JSON values and the length of its text, measures of the
 * validation work.
 */
export interface ResourceSize {
  /** JSON values: objects, arrays and primitives. */
  elements: number;
  /** Characters in all its strings (a narrative div is parsed as XML). */
  textLength: number;
}

export function assertResourceCost(resource: unknown, limits: ResourceCostLimits): ResourceSize {
  if (!resource || typeof resource !== 'object') return { elements: 1, textLength: typeof resource === 'string' ? resource.length : 0 };
  const rootType = (resource as { resourceType?: unknown }).resourceType;
  const root = typeof rootType === 'string' ? rootType.slice(0, 64) : '';
  let elements = 0;
  let textLength = 0;
  const count = (value?: unknown): void => {
    if (typeof value === 'string') textLength += value.length;
    if (++elements > limits.maxElements) {
      throw new FhirError(413, 'too-costly', `The resource has more than ${limits.maxElements} elements (FHIR_MAX_RESOURCE_ELEMENTS)`, root ? [root] : undefined);
    }
  };
  const stack: { node: object; place: JsonPlace }[] = [{ node: resource, place: { step: root } }];
  while (stack.length) {
    const { node, place } = stack.pop()!;
    count();
    if (Array.isArray(node)) {
      if (node.length > limits.maxArrayLength) {
        const path = pathOf(place).slice(0, 200);
        throw new FhirError(413, 'too-costly', `${path} has ${node.length} elements: at most ${limits.maxArrayLength} per array (FHIR_MAX_ARRAY_LENGTH)`, [path]);
      }
      for (let i = node.length - 1; i >= 0; i--) {
        const item: unknown = node[i];
        if (item && typeof item === 'object') stack.push({ node: item, place: { parent: place, step: `[${i}]` } });
        else count(item);
      }
      continue;
    }
    for (const key of Object.keys(node)) {
      const value = (node as Record<string, unknown>)[key];
      if (value && typeof value === 'object') stack.push({ node: value, place: { parent: place, step: `.${key}` } });
      else count(value);
    }
  }
  return { elements, textLength };
}
