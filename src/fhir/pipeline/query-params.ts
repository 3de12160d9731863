import type { QueryParams } from './interaction';

export function firstValue(query: QueryParams, name: string): string | undefined {
  const v = query[name];
  return Array.isArray(v) ? v[0] : v;
}

export function allValues(query: QueryParams, name: string): string[] {
  const v = query[name];
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}
