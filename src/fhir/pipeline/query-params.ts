import type { QueryParams } from './interaction';

export function firstValue(query: QueryParams, name: string): string | undefined {
  const v = query[name];
  return Array.isArray(v) ? v[0] : v;
}

export function allValues(query: QueryParams, name: string): string[] {
  const v = query[name];
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

/** A query string (`identifier=a|b&_count=1`, conditional criteria) as query parameters; repeated names become arrays. */
export function parseQueryString(query: string): QueryParams {
  const out: QueryParams = {};
  for (const [k, v] of new URLSearchParams(query)) {
    const prev = out[k];
    out[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  return out;
}
