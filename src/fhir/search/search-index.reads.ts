import type { SearchParamDef } from './search-parameter.registry';

/** Functions that answer empty for an empty input: a path made only of them stays empty. */
const EMPTY_PRESERVING = new Set(['where', 'select', 'as', 'ofType', 'resolve', 'first', 'last', 'single', 'extension', 'skip', 'take', 'tail', 'distinct']);
const ROOTS = new Set(['Resource', 'DomainResource']);
const STEP = /^(?:\.([A-Za-z_][A-Za-z0-9_]*)(\(\))?|\s+as\s+[A-Za-z]+|\[\d+\])/;

const cache = new WeakMap<SearchParamDef, readonly string[] | null>();

/**
 * The resource's top-level elements a parameter's expression starts from, when every branch of it
 * is a plain path (`Observation.value as Quantity`, `Patient.name.where(use = 'official')`,
 * `Condition.onset.ofType(Range)`) and so yields nothing when that element is absent. Null when
 * an expression may yield values from nothing (`exists()`, `iif`, `and`, `%resource`, the bare
 * resource): it is always evaluated. Lets index extraction skip parameters a resource cannot match
 * without changing a single row (checked against full evaluation in search-index.writer.spec.ts).
 */
export function rootElementsRead(def: SearchParamDef, resourceType: string): readonly string[] | null {
  let reads = cache.get(def);
  if (reads === undefined) {
    reads = parseRootElements(def.expression, resourceType);
    if (!reads && def.type === 'composite' && def.expression.trim() === resourceType) {
      // A composite over the resource itself has no row when any one component is empty.
      for (const component of def.components ?? []) reads = parseRootElements(`${resourceType}.${component.expression}`, resourceType) ?? reads;
    }
    cache.set(def, reads);
  }
  return reads;
}

/** Whether the resource has one of the elements (a choice element by any of its type suffixes; `_x` primitive extensions too). */
export function hasAnyElement(keys: readonly string[], elements: readonly string[]): boolean {
  for (const key of keys) {
    const name = key.charCodeAt(0) === 95 /* _ */ ? key.slice(1) : key;
    for (const element of elements) if (name.startsWith(element)) return true;
  }
  return false;
}

function parseRootElements(expression: string, resourceType: string): string[] | null {
  // String literals may hold parentheses or dots; their content never names the root element.
  const text = expression.replace(/'(?:[^'\\]|\\.)*'/g, "''");
  const out: string[] = [];
  for (const raw of splitTopLevel(text)) {
    let branch = stripOuterParentheses(raw.trim());
    // Arguments of the allowed functions filter or convert; what they contain does not matter.
    for (let prev = ''; prev !== branch; ) [prev, branch] = [branch, branch.replace(/\([^()]*\)/g, '()')];
    const head = /^([A-Za-z]+)\.([A-Za-z_][A-Za-z0-9_]*)/.exec(branch);
    if (!head || (head[1] !== resourceType && !ROOTS.has(head[1]))) return null;
    let tail = branch.slice(head[0].length);
    while (tail.length) {
      const step = STEP.exec(tail);
      if (!step || (step[2] && !EMPTY_PRESERVING.has(step[1]))) return null;
      tail = tail.slice(step[0].length);
    }
    out.push(head[2]);
  }
  return out;
}

function splitTopLevel(expression: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < expression.length; i++) {
    const c = expression[i];
    if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === '|' && depth === 0) {
      parts.push(expression.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(expression.slice(start));
  return parts;
}

function stripOuterParentheses(s: string): string {
  while (s.startsWith('(') && s.endsWith(')')) {
    let depth = 0;
    let closesAtEnd = true;
    for (let i = 0; i < s.length; i++) {
      if (s[i] === '(') depth++;
      else if (s[i] === ')' && --depth === 0 && i < s.length - 1) {
        closesAtEnd = false;
        break;
      }
    }
    if (!closesAtEnd) break;
    s = s.slice(1, -1).trim();
  }
  return s;
}
