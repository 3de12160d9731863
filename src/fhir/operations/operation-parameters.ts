import type { ParametersParameter } from '@medplum/fhirtypes';
import { FhirError } from '../../common/fhir-error';
import type { OperationInteraction } from '../pipeline/interaction';

/** Response-shaping parameters any operation accepts in the query string. */
const SHAPING = new Set(['_format', '_pretty']);

/**
 * The input parameters of an operation (operations.html#request): query-string values as
 * `valueString`, then the parameters of a Parameters body. A name the operation does not define is a
 * 400 naming it. `body`: false when the body is not a Parameters (e.g. `$validate` with the resource).
 */
export function operationParameters(i: OperationInteraction, known: readonly string[], body = true): Map<string, ParametersParameter[]> {
  const input = new Map<string, ParametersParameter[]>();
  const add = (p: ParametersParameter): void => {
    if (!known.includes(p.name as string)) {
      throw FhirError.badRequest(`Unknown parameter '${String(p.name).slice(0, 64)}' for $${i.operation}`, [String(p.name).slice(0, 64)]);
    }
    input.set(p.name as string, [...(input.get(p.name as string) ?? []), p]);
  };
  for (const [name, v] of Object.entries(i.query)) {
    if (SHAPING.has(name)) continue;
    for (const one of Array.isArray(v) ? v : v !== undefined ? [v] : []) add({ name, valueString: one });
  }
  if (body && isParameters(i.body)) {
    for (const p of (i.body as { parameter?: unknown }).parameter as ParametersParameter[] | undefined ?? []) {
      if (!p || typeof p !== 'object' || typeof p.name !== 'string') throw FhirError.badRequest('Every Parameters.parameter needs a name', ['Parameters.parameter']);
      add(p);
    }
  } else if (body && !isEmpty(i.body)) {
    throw FhirError.badRequest(`The body of $${i.operation} must be a Parameters resource`, ['resourceType']);
  }
  return input;
}

export function isParameters(body: unknown): boolean {
  return !!body && typeof body === 'object' && (body as { resourceType?: unknown }).resourceType === 'Parameters';
}

export function isEmpty(body: unknown): boolean {
  return body === undefined || body === null || (typeof body === 'object' && Object.keys(body).length === 0);
}

/** The one value of a primitive parameter (string, code, uri, canonical), or undefined. */
export function singleValue(input: Map<string, ParametersParameter[]>, name: string): string | undefined {
  const all = input.get(name) ?? [];
  if (all.length > 1) throw FhirError.badRequest(`${name} may be given once`, [name]);
  if (!all.length) return undefined;
  const p = all[0];
  const v = p.valueString ?? p.valueCode ?? p.valueUri ?? p.valueCanonical ?? p.valueUrl;
  if (typeof v !== 'string') throw FhirError.badRequest(`${name} needs a string, code or uri value`, [name]);
  return v;
}
