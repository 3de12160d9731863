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
 * An unpaired UTF-16 surrogate (`"\ud800"` in JSON, or an invalid UTF-8 byte as the body parser
 * marks it, see `decodeUtf8MarkingInvalid`). With the `u` flag a proper pair is one code point, so
 * only lone halves match. FHIR strings are Unicode text (R4 datatypes: `string`), and PostgreSQL's
 * jsonb cannot hold a lone surrogate.
 */
const LONE_SURROGATE = /\p{Cs}/u;
/** Any surrogate at all: a plain scan, far faster on long text than the Unicode-aware one. */
const ANY_SURROGATE = /[\uD800-\uDFFF]/;

function assertUnicode(value: string, at: () => string): void {
  if (!ANY_SURROGATE.test(value) || !LONE_SURROGATE.test(value)) return;
  const where = at().slice(0, 200) || '(the root)';
  throw FhirError.badRequest(
    `The text at ${where} is not valid Unicode: it holds an unpaired UTF-16 surrogate (such as \\ud800) or bytes that are not UTF-8`,
    [where],
  );
}

/**
 * A place in a JSON document, its path built only when an error names it (a body of 100,000
 * values would otherwise build 100,000 strings).
 */
export interface JsonPlace {
  readonly parent?: JsonPlace;
  /** `Patient` at the root, `.name` for a member, `[0]` for an array item. */
  readonly step: string;
}

export function pathOf(place: JsonPlace): string {
  const steps: string[] = [];
  for (let p: JsonPlace | undefined = place; p; p = p.parent) steps.push(p.step);
  const path = steps.reverse().join('');
  return path.startsWith('.') ? path.slice(1) : path;
}

/**
 * The resources (objects with a `resourceType`) inside bodies `assertJsonShape` has passed: a
 * transaction's entries were checked with the Bundle when it was parsed, and validation need not
 * walk each of them again. Only the check adds to it; a resource built or changed in code is not in
 * it and is checked on validation.
 */
const shapeChecked = new WeakSet<object>();

/** Whether `assertJsonShape` has passed this resource, on its own or inside the body it came in. */
export function isShapeChecked(resource: unknown): boolean {
  return !!resource && typeof resource === 'object' && shapeChecked.has(resource);
}

/**
 * Checks a parsed JSON body (or a resource) before anything interprets it: nesting depth,
 * prototype keys and text that is not Unicode, anywhere. Iterative, so a body nested 10,000 deep
 * cannot exhaust the stack. Paths read like FHIRPath from the root resource
 * (`Bundle.entry[0].resource.name[0].constructor`).
 */
export function assertJsonShape(body: unknown): void {
  if (!body || typeof body !== 'object') return;
  const rootType = (body as { resourceType?: unknown }).resourceType;
  const stack: { node: object; place: JsonPlace; depth: number }[] = [
    { node: body, place: { step: typeof rootType === 'string' && /^[A-Z][A-Za-z]{0,63}$/.test(rootType) ? rootType : '' }, depth: 1 },
  ];
  const resources: object[] = [];
  while (stack.length) {
    const { node, place, depth } = stack.pop()!;
    if (depth > MAX_JSON_DEPTH) {
      throw FhirError.badRequest(`The JSON is nested more than ${MAX_JSON_DEPTH} levels deep (at ${pathOf(place).slice(0, 200)})`, undefined, 'too-costly');
    }
    if (Array.isArray(node)) {
      node.forEach((item, i) => {
        if (typeof item === 'string') assertUnicode(item, () => pathOf({ parent: place, step: `[${i}]` }));
        else if (item && typeof item === 'object') stack.push({ node: item, place: { parent: place, step: `[${i}]` }, depth: depth + 1 });
      });
      continue;
    }
    if (typeof (node as { resourceType?: unknown }).resourceType === 'string') resources.push(node);
    for (const key of Object.keys(node)) {
      // A bad key is named by its parent: the key itself cannot be shown.
      assertUnicode(key, () => pathOf(place));
      const at: JsonPlace = { parent: place, step: `.${key}` };
      if (PROTOTYPE_KEYS.has(key)) {
        const where = pathOf(at).slice(0, 200);
        throw FhirError.badRequest(`Unknown element '${key}' at ${where}`, [where], 'structure');
      }
      const value = (node as Record<string, unknown>)[key];
      if (typeof value === 'string') assertUnicode(value, () => pathOf(at));
      else if (value && typeof value === 'object') stack.push({ node: value, place: at, depth: depth + 1 });
    }
  }
  // Only once the whole body has passed: a resource is never marked by a walk that failed.
  for (const resource of resources) shapeChecked.add(resource);
}

/**
 * UTF-8 bytes as text, each byte that is not part of a valid UTF-8 sequence (RFC 3629: no overlong
 * forms, no encoded surrogates, nothing above U+10FFFF) as the lone surrogate U+DC80–U+DCFF
 * instead of U+FFFD. The decoder would silently replace them; marked, `assertJsonShape` refuses
 * them naming the element they are in.
 */
export function decodeUtf8MarkingInvalid(bytes: Buffer): string {
  let out = '';
  let start = 0;
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i];
    if (b < 0x80) {
      i++;
      continue;
    }
    const length = b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 0;
    // The second byte's range excludes overlongs (E0, F0), surrogates (ED) and > U+10FFFF (F4).
    const low = b === 0xe0 ? 0xa0 : b === 0xf0 ? 0x90 : 0x80;
    const high = b === 0xed ? 0x9f : b === 0xf4 ? 0x8f : 0xbf;
    let valid = length > 0 && i + length <= bytes.length && bytes[i + 1] >= low && bytes[i + 1] <= high;
    for (let k = 2; valid && k < length; k++) valid = bytes[i + k] >= 0x80 && bytes[i + k] <= 0xbf;
    if (valid) {
      i += length;
      continue;
    }
    out += bytes.toString('utf8', start, i) + String.fromCharCode(0xdc00 + b);
    start = ++i;
  }
  return out + bytes.toString('utf8', start);
}
