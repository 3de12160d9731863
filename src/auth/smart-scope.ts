/**
 * SMART on FHIR system scopes, v2 (`system/Observation.rs?category=laboratory`) and v1
 * (`system/Patient.read`, `system/*.*`), normalized to a resource type, a set of c/r/u/d/s
 * verbs and optional query restrictions.
 */
export interface SmartScope {
  readonly raw: string;
  readonly resourceType: string;
  readonly verbs: ReadonlySet<string>;
  /**
   * v2 `?param=value` restrictions (AND-ed). Enforced in SQL for read and search (scope-restriction.ts);
   * a restricted scope grants no other interaction.
   */
  readonly restrictions: readonly (readonly [string, string])[];
}

const SCOPE_RE = /^system\/(\*|[A-Z][A-Za-z]+)\.(\*|read|write|[cruds]+)(?:\?(.+))?$/;

/**
 * Parsed scopes by their text (a pure function of it): every request of a client authorizes with
 * the same few scope strings, and parsing them was ~20 µs of a read by id (docs/performance.md,
 * "Node CPU per request, fourth pass"). Bounded, cleared when full: the texts come from tokens and
 * token requests.
 */
const parsedScopes = new Map<string, SmartScope | undefined>();
const MAX_PARSED_SCOPES = 1000;

/** The scope `raw` denotes, or undefined when it is none this server grants. Shared by every caller: read-only. */
export function parseSmartScope(raw: string): SmartScope | undefined {
  if (parsedScopes.has(raw)) return parsedScopes.get(raw);
  const scope = parseScopeText(raw);
  if (parsedScopes.size >= MAX_PARSED_SCOPES) parsedScopes.clear();
  parsedScopes.set(raw, scope);
  return scope;
}

function parseScopeText(raw: string): SmartScope | undefined {
  const m = SCOPE_RE.exec(raw);
  if (!m) return undefined;
  const [, resourceType, access, query] = m;
  // A restriction names search parameters of one type; `system/*.rs?…` has no type to search.
  if (query !== undefined && resourceType === '*') return undefined;
  let verbs: string;
  if (access === '*') verbs = 'cruds';
  else if (access === 'read') verbs = 'rs';
  else if (access === 'write') verbs = 'cud';
  else {
    // v2 verbs must be in c-r-u-d-s order without repeats.
    if (!/^c?r?u?d?s?$/.test(access)) return undefined;
    verbs = access;
  }
  return Object.freeze({
    raw,
    resourceType,
    verbs: new Set(verbs),
    restrictions: Object.freeze(query ? [...new URLSearchParams(query)].map((pair) => Object.freeze(pair)) : []),
  });
}


/** True when `scope` grants `verb` on `resourceType` (`*` for a system-wide interaction). */
export function scopeAllows(scope: SmartScope, resourceType: string | undefined, verb: string): boolean {
  if (!scope.verbs.has(verb)) return false;
  if (scope.resourceType === '*') return true;
  return resourceType !== undefined && scope.resourceType === resourceType;
}

/**
 * Granted = requested ∩ registered. A requested scope that a registered one covers is granted as
 * asked; otherwise each overlap with a registered scope is granted in v2 form: the narrower type,
 * the common verbs and both restrictions (`system/*.rs` ∩ `system/Patient.cruds` = `system/Patient.rs`).
 */
export function grantScopes(requested: string[], registered: string[]): string[] {
  const reg = registered.map(parseSmartScope).filter((s): s is SmartScope => !!s);
  const granted = new Set<string>();
  for (const raw of requested) {
    const want = parseSmartScope(raw);
    if (!want) continue;
    if (reg.some((have) => covers(have, want))) {
      granted.add(raw);
      continue;
    }
    for (const have of reg) {
      if (have.resourceType !== '*' && want.resourceType !== '*' && have.resourceType !== want.resourceType) continue;
      const verbs = [...'cruds'].filter((v) => want.verbs.has(v) && have.verbs.has(v)).join('');
      if (!verbs) continue;
      const type = want.resourceType === '*' ? have.resourceType : want.resourceType;
      const restrictions: [string, string][] = want.restrictions.map(([k, v]) => [k, v]);
      for (const [k, v] of have.restrictions) if (!restrictions.some(([k2, v2]) => k === k2 && v === v2)) restrictions.push([k, v]);
      granted.add(`system/${type}.${verbs}${restrictions.length ? `?${new URLSearchParams(restrictions)}` : ''}`);
    }
  }
  return [...granted];
}

/** `have` allows everything `want` allows: its type, all its verbs, and no restriction `want` lacks. */
function covers(have: SmartScope, want: SmartScope): boolean {
  return (
    (have.resourceType === '*' || have.resourceType === want.resourceType) &&
    [...want.verbs].every((v) => have.verbs.has(v)) &&
    have.restrictions.every(([k, v]) => want.restrictions.some(([k2, v2]) => k === k2 && v === v2))
  );
}
