import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { evalFhirPathTyped, parseFhirPath, toTypedValue } from '@medplum/core';
import type { SearchParameter } from '@medplum/fhirtypes';
import { FhirError } from '../../common/fhir-error';
import { FhirDefinitions } from '../definitions/fhir-definitions';
import { compositeComponentsOf, MAX_COMPONENTS, r4SearchParameter } from './search-composite';
import { r4SearchParamsOf, SearchParamDef, searchParamDefOf } from './search-parameter.registry';

// src/fhir/search and dist/fhir/search are both three levels below the project root.
const PROJECT_ROOT = resolve(__dirname, '..', '..', '..');
export const SHIPPED_DIR = join(PROJECT_ROOT, 'fhir-profiles');

/** Types a custom SearchParameter may have: those the index writer extracts and the compiler answers. */
const SUPPORTED_TYPES = new Set(['token', 'string', 'date', 'number', 'quantity', 'reference', 'uri', 'composite']);
const CODE_RE = /^[A-Za-z][A-Za-z0-9\-_]{0,63}$/;

/** Custom parameters per resource type, then per code. */
export type CustomSearchParams = Map<string, Map<string, SearchParamDef>>;

/**
 * SearchParameter resources shipped with the server (`fhir-profiles/*.json` whose resourceType is
 * SearchParameter), in file-name order. Same files on every node, so every node agrees.
 */
export function loadShippedSearchParameters(dir = SHIPPED_DIR): SearchParameter[] {
  const out: SearchParameter[] = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.json')).sort()) {
    const json = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { resourceType?: string };
    if (json.resourceType === 'SearchParameter') out.push(json as SearchParameter);
  }
  return out;
}

/** Anything with a pg-style `query` (DataSource, EntityManager). */
export interface Queryable {
  query(sql: string, params?: unknown[]): Promise<unknown>;
}

/** Active SearchParameter resources stored on the server, in id order (so every node builds the same layer). */
export async function loadStoredSearchParameters(db: Queryable): Promise<SearchParameter[]> {
  const rows = (await db.query(
    `SELECT content FROM resource
      WHERE resource_type = 'SearchParameter' AND NOT deleted AND content->>'status' = 'active'
      ORDER BY id`,
  )) as { content: SearchParameter }[];
  return rows.map((r) => r.content);
}

/**
 * Why a SearchParameter cannot be applied by this server, or undefined when it can. Only active
 * parameters are applied (and checked); others are stored as plain conformance resources.
 * `others`: the custom parameters already in force (shipped and stored, without this one).
 */
export function searchParameterProblem(sp: SearchParameter, others: readonly SearchParameter[]): FhirError | undefined {
  if (sp.status !== 'active') return undefined;
  const defs = FhirDefinitions.get();
  const code = sp.code;
  if (!code || !CODE_RE.test(code)) {
    return new FhirError(422, 'value', `SearchParameter.code '${String(code ?? '').slice(0, 64)}' must match ${CODE_RE.source} (a leading '_' is reserved for built-in parameters)`, ['SearchParameter.code']);
  }
  if (!SUPPORTED_TYPES.has(sp.type as string)) {
    return new FhirError(422, 'not-supported', `SearchParameter.type '${sp.type}' is not supported for custom parameters (supported: ${[...SUPPORTED_TYPES].join(', ')})`, ['SearchParameter.type']);
  }
  const bases = (sp.base ?? []) as string[];
  const badBase = bases.find((b) => !defs.isStorable(b));
  if (!bases.length || badBase !== undefined) {
    return new FhirError(422, 'not-supported', `SearchParameter.base must name storable resource types${badBase !== undefined ? `, not '${badBase}'` : ''}`, ['SearchParameter.base']);
  }
  const badTarget = ((sp.target ?? []) as string[]).find((t) => !defs.isStorable(t));
  if (badTarget !== undefined) {
    return new FhirError(422, 'not-supported', `SearchParameter.target '${badTarget}' is not a storable resource type`, ['SearchParameter.target']);
  }
  if (!sp.expression?.trim()) {
    return new FhirError(422, 'required', 'An active SearchParameter needs a FHIRPath expression to be indexed', ['SearchParameter.expression']);
  }
  try {
    parseFhirPath(sp.expression);
    // Unknown functions only surface on evaluation; an empty instance of each base finds them.
    for (const base of bases) evalFhirPathTyped(sp.expression, [toTypedValue({ resourceType: base })]);
  } catch (err) {
    const reason = err instanceof Error ? err.message.slice(0, 200) : 'invalid';
    return FhirError.badRequest(`SearchParameter.expression is not a valid FHIRPath expression: ${reason}`, ['SearchParameter.expression']);
  }
  if (sp.type === 'composite') {
    const problem = compositeProblem(sp, others);
    if (problem) return problem;
  }
  for (const base of bases) {
    if (defs.searchParameters(base)[code] || r4SearchParamsOf(base).has(code)) {
      return new FhirError(422, 'business-rule', `'${code}' is an R4 search parameter of ${base}; a custom parameter may not redefine it`, ['SearchParameter.code']);
    }
    const clash = others.find((o) => o.status === 'active' && o.code === code && (o.base ?? []).includes(base as never));
    if (clash) {
      return new FhirError(422, 'duplicate', `A search parameter '${code}' on ${base} is already defined (${clash.url ?? `SearchParameter/${clash.id}`})`, ['SearchParameter.code']);
    }
  }
  if (sp.url && others.some((o) => o.url === sp.url)) {
    return new FhirError(422, 'duplicate', `Another SearchParameter already has the url ${sp.url}`, ['SearchParameter.url']);
  }
  return undefined;
}

/**
 * A composite's `component.definition` names an R4 SearchParameter or an active custom one (shipped
 * or stored) by canonical URL; the component's type comes from it, its `expression` is evaluated on
 * each value of the composite's expression (as R4's composites are).
 */
function componentResolver(others: readonly SearchParameter[]): (url: string) => SearchParameter | undefined {
  return (url) => r4SearchParameter(url) ?? others.find((o) => o.status === 'active' && o.url === url && o.type !== 'composite');
}

function compositeProblem(sp: SearchParameter, others: readonly SearchParameter[]): FhirError | undefined {
  const components = sp.component ?? [];
  if (components.length < 2 || components.length > MAX_COMPONENTS) {
    return new FhirError(422, 'not-supported', `A composite SearchParameter needs 2 to ${MAX_COMPONENTS} components, not ${components.length}`, ['SearchParameter.component']);
  }
  const resolve = componentResolver(others);
  for (const [i, c] of components.entries()) {
    const target = c.definition ? resolve(c.definition) : undefined;
    if (!target || target.type === 'composite' || target.type === 'special') {
      return new FhirError(
        422,
        'not-supported',
        `SearchParameter.component[${i}].definition '${String(c.definition ?? '').slice(0, 200)}' is not an R4 or active custom search parameter of a type a composite can hold`,
        [`SearchParameter.component[${i}].definition`],
      );
    }
    try {
      if (!c.expression?.trim()) throw new Error('missing');
      parseFhirPath(c.expression);
    } catch (err) {
      const reason = err instanceof Error ? err.message.slice(0, 200) : 'invalid';
      return FhirError.badRequest(`SearchParameter.component[${i}].expression is not a valid FHIRPath expression: ${reason}`, [`SearchParameter.component[${i}].expression`]);
    }
  }
  return compositeComponentsOf(sp, resolve) ? undefined : new FhirError(422, 'not-supported', 'The composite\'s components cannot be indexed', ['SearchParameter.component']);
}

/**
 * The custom layer of the registry from shipped then stored parameters. A parameter that cannot be
 * applied (stored before these checks, or clashing with a shipped one) is skipped and reported, so
 * one bad row never stops a node from starting; every node skips the same ones.
 */
export function buildCustomSearchParams(
  shipped: readonly SearchParameter[],
  stored: readonly SearchParameter[],
  skipped: (sp: SearchParameter, problem: FhirError) => void,
): CustomSearchParams {
  const accepted: SearchParameter[] = [];
  const layer: CustomSearchParams = new Map();
  // Composites last: their components may be custom parameters stored after them.
  const all = [...shipped, ...stored];
  for (const sp of [...all.filter((s) => s.type !== 'composite'), ...all.filter((s) => s.type === 'composite')]) {
    if (sp.status !== 'active') continue;
    const problem = searchParameterProblem(sp, accepted);
    if (problem) {
      skipped(sp, problem);
      continue;
    }
    accepted.push(sp);
    const components = sp.type === 'composite' ? compositeComponentsOf(sp, componentResolver(accepted)) : undefined;
    for (const base of sp.base as string[]) {
      let map = layer.get(base);
      if (!map) layer.set(base, (map = new Map()));
      map.set(sp.code!, { ...searchParamDefOf(sp, base), ...(components ? { components } : {}) });
    }
  }
  return layer;
}
