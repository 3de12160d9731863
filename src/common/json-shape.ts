import { FhirError } from './fhir-error';

/** Deepest nesting of objects and arrays a request body may have (R4 resources need far fewer). */
export const MAX_JSON_DEPTH = 100;

/**
 * Names every JavaScript object inherits (`__proto__`, `constructor`, `toString`, …). None is a FHIR
 * element; code that looks elements up by name would find the inherited member instead, so they
 * are refused like any unknown element.
 */
const PROTOTYPE_KEYS = new Set(Object.getOwnPropertyNames(Object.prototype));

export function isPrototypeKey(key: string): boolean {
  return PROTOTYPE_KEYS.has(key);
}

/**
 * Checks a parsed JSON body (or a resource) before anything interprets it: nesting depth and
 * prototype keys, anywhere. Iterative, so a body nested 10,000 deep cannot exhaust the stack.
 * Paths read like FHIRPath from the root resource (`Bundle.entry[0].resource.name[0].constructor`).
 */
export function assertJsonShape(body: unknown): void {
  if (!body || typeof body !== 'object') return;
  const rootType = (body as { resourceType?: unknown }).resourceType;
  const stack: { node: object; path: string; depth: number }[] = [
    { node: body, path: typeof rootType === 'string' && /^[A-Z][A-Za-z]{0,63}$/.test(rootType) ? rootType : '', depth: 1 },
  ];
  while (stack.length) {
    const { node, path, depth } = stack.pop()!;
    if (depth > MAX_JSON_DEPTH) {
      throw FhirError.badRequest(`The JSON is nested more than ${MAX_JSON_DEPTH} levels deep (at ${path.slice(0, 200)})`, undefined, 'too-costly');
    }
    if (Array.isArray(node)) {
      node.forEach((item, i) => {
        if (item && typeof item === 'object') stack.push({ node: item, path: `${path}[${i}]`, depth: depth + 1 });
      });
      continue;
    }
    for (const key of Object.keys(node)) {
      const at = path ? `${path}.${key}` : key;
      if (PROTOTYPE_KEYS.has(key)) {
        throw FhirError.badRequest(`Unknown element '${key}' at ${at.slice(0, 200)}`, [at.slice(0, 200)], 'structure');
      }
      const value = (node as Record<string, unknown>)[key];
      if (value && typeof value === 'object') stack.push({ node: value, path: at, depth: depth + 1 });
    }
  }
}
