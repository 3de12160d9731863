/**
 * SMART on FHIR system scopes, v2 (`system/Observation.rs?category=laboratory`) and v1
 * (`system/Patient.read`, `system/*.*`), normalized to a resource type, a set of c/r/u/d/s
 * verbs and optional query restrictions.
 */
export interface SmartScope {
  raw: string;
  resourceType: string;
  verbs: Set<string>;
  /**
   * v2 `?param=value` restrictions (AND-ed). Enforced in SQL for read and search (scope-restriction.ts);
   * a restricted scope grants no other interaction.
   */
  restrictions: [string, string][];
}

const SCOPE_RE = /^system\/(\*|[A-Z][A-Za-z]+)\.(\*|read|write|[cruds]+)(?:\?(.+))?$/;

export function parseSmartScope(raw: string): SmartScope | undefined {
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
  return {
    raw,
    resourceType,
    verbs: new Set(verbs),
    restrictions: query ? [...new URLSearchParams(query)] : [],
  };
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
      const restrictions = [...want.restrictions];
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
