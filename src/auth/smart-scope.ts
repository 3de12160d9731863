/**
 * SMART on FHIR system scopes, v2 (`system/Observation.rs?category=laboratory`) and v1
 * (`system/Patient.read`, `system/*.*`), normalized to a resource type, a set of c/r/u/d/s
 * verbs and optional query restrictions.
 */
export interface SmartScope {
  raw: string;
  resourceType: string;
  verbs: Set<string>;
  /** v2 `?param=value` restrictions; carried on the principal (search enforcement is later work). */
  restrictions: [string, string][];
}

const SCOPE_RE = /^system\/(\*|[A-Z][A-Za-z]+)\.(\*|read|write|[cruds]+)(?:\?(.+))?$/;

export function parseSmartScope(raw: string): SmartScope | undefined {
  const m = SCOPE_RE.exec(raw);
  if (!m) return undefined;
  const [, resourceType, access, query] = m;
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

/** A requested scope is granted when a registered scope covers all its verbs, type and restrictions. */
export function grantScopes(requested: string[], registered: string[]): string[] {
  const reg = registered.map(parseSmartScope).filter((s): s is SmartScope => !!s);
  return requested.filter((raw) => {
    const want = parseSmartScope(raw);
    if (!want) return false;
    return reg.some(
      (have) =>
        (have.resourceType === '*' || have.resourceType === want.resourceType) &&
        [...want.verbs].every((v) => have.verbs.has(v)) &&
        have.restrictions.every(([k, v]) => want.restrictions.some(([k2, v2]) => k === k2 && v === v2)),
    );
  });
}
