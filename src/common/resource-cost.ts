import type { ResourceCostLimits } from '../config/app.config';
import { FhirError } from './fhir-error';

/**
 * Refuses a resource whose size alone would make validating and indexing it costly (one Patient
 * with 80,000 names held the event loop for seconds and 450 MB), before any of that work starts: one
 * walk that stops at the first limit passed. 413 `too-costly`, naming the limit and its setting.
 */
export function assertResourceCost(resource: unknown, limits: ResourceCostLimits): void {
  if (!resource || typeof resource !== 'object') return;
  const rootType = (resource as { resourceType?: unknown }).resourceType;
  const root = typeof rootType === 'string' ? rootType.slice(0, 64) : '';
  let elements = 0;
  const stack: { node: unknown; path: string }[] = [{ node: resource, path: root }];
  while (stack.length) {
    const { node, path } = stack.pop()!;
    if (++elements > limits.maxElements) {
      throw new FhirError(
        413,
        'too-costly',
        `The resource has more than ${limits.maxElements} elements (FHIR_MAX_RESOURCE_ELEMENTS)`,
        root ? [root] : undefined,
      );
    }
    if (!node || typeof node !== 'object') continue;
    if (Array.isArray(node)) {
      if (node.length > limits.maxArrayLength) {
        throw new FhirError(
          413,
          'too-costly',
          `${path.slice(0, 200)} has ${node.length} elements: at most ${limits.maxArrayLength} per array (FHIR_MAX_ARRAY_LENGTH)`,
          [path.slice(0, 200)],
        );
      }
      for (let i = node.length - 1; i >= 0; i--) stack.push({ node: node[i], path: `${path}[${i}]` });
      continue;
    }
    for (const [key, value] of Object.entries(node)) stack.push({ node: value, path: path ? `${path}.${key}` : key });
  }
}
