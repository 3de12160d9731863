import { applyPatch, fhirpathPatchTypedValue, parseFhirPathPatchParameters, toTypedValue } from '@medplum/core';
import type { Parameters as FhirParameters, Resource } from '@medplum/fhirtypes';
import { FhirError } from '../../common/fhir-error';
import { decimalMarker, decodeDecimals, encodeDecimals } from '../../common/fhir-json';
import { isPrototypeKey } from '../../common/json-shape';

const JSON_PATCH_OPS = new Set(['add', 'remove', 'replace', 'move', 'copy', 'test']);
const FHIRPATH_PATCH_TYPES = new Set(['add', 'insert', 'delete', 'replace', 'move']);

/**
 * Applies a JSON Patch (RFC 6902) document or a FHIRPath Patch `Parameters` resource to a copy of
 * the current resource. A malformed patch is 400; a patch that cannot be applied (failed `test`,
 * missing path) is 422; the result is validated by the caller like any update.
 */
export function applyResourcePatch(current: Resource, received: unknown): Resource {
  // Decimals as received (1.50) cross the patch libraries, which clone values, as marked strings:
  // a copy of the current resource and of the patch, decoded again in the result.
  const marker = decimalMarker();
  const target = encodeDecimals(current, marker);
  const patch = encodeDecimals(received, marker);
  if (Array.isArray(patch)) {
    patch.forEach((op, n) => {
      const o = op as { op?: unknown; path?: unknown };
      if (!o || typeof o !== 'object' || typeof o.op !== 'string' || !JSON_PATCH_OPS.has(o.op) || typeof o.path !== 'string') {
        throw FhirError.badRequest(`JSON Patch operation ${n} is malformed: it needs an op (${[...JSON_PATCH_OPS].join(', ')}) and a path`, [`[${n}]`]);
      }
      for (const member of ['path', 'from'] as const) {
        const pointer = (o as Record<string, unknown>)[member];
        const key = typeof pointer === 'string' ? pointer.split('/').find((segment) => isPrototypeKey(segment.replace(/~1/g, '/').replace(/~0/g, '~'))) : undefined;
        if (key !== undefined) throw FhirError.badRequest(`JSON Patch operation ${n} names the unknown element '${key}'`, [`[${n}].${member}`], 'structure');
      }
    });
    // One operation at a time: each is checked against the document the ones before it made.
    (patch as Parameters<typeof applyPatch>[1]).forEach((op, n) => {
      assertArrayIndexInRange(target, op, n);
      let result: ReturnType<typeof applyPatch>[number];
      try {
        [result] = applyPatch(target, [op]);
      } catch (err) {
        throw new FhirError(422, 'processing', `JSON Patch could not be applied: ${(err as Error).message}`);
      }
      if (result !== null) {
        throw new FhirError(422, 'processing', `JSON Patch operation ${n} could not be applied: ${result.message}`, [`[${n}]`]);
      }
    });
  } else if (patch && typeof patch === 'object' && (patch as { resourceType?: unknown }).resourceType === 'Parameters') {
    const params = patch as FhirParameters;
    (params.parameter ?? []).forEach((p, n) => {
      const type = p.part?.find((part) => part.name === 'type')?.valueCode;
      if (p.name !== 'operation' || !type || !FHIRPATH_PATCH_TYPES.has(type)) {
        throw FhirError.badRequest(
          `FHIRPath Patch parameter ${n} must be an 'operation' with a type of ${[...FHIRPATH_PATCH_TYPES].join(', ')}`,
          [`Parameters.parameter[${n}]`],
        );
      }
    });
    try {
      const typed = toTypedValue(target);
      fhirpathPatchTypedValue(typed, parseFhirPathPatchParameters(params));
      return decodeDecimals(typed.value as Resource, marker);
    } catch (err) {
      throw new FhirError(422, 'processing', `FHIRPath Patch could not be applied: ${(err as Error).message}`);
    }
  } else {
    throw FhirError.badRequest('PATCH needs a JSON Patch array (application/json-patch+json) or a FHIRPath Patch Parameters resource');
  }
  return decodeDecimals(target, marker);
}

/**
 * RFC 6902 §4.1: an `add` (and the target of `copy` and `move`, which add) at an array index greater
 * than the array's length is an error; the patch library would append instead.
 */
function assertArrayIndexInRange(document: unknown, op: { op: string; path: string }, n: number): void {
  if (op.op !== 'add' && op.op !== 'copy' && op.op !== 'move') return;
  const tokens = op.path.split('/').slice(1).map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
  const last = tokens.pop();
  if (last === undefined || !/^\d+$/.test(last)) return;
  let parent: unknown = document;
  for (const token of tokens) {
    if (parent === null || typeof parent !== 'object' || !Object.hasOwn(parent, token)) return; // the library reports a missing path
    parent = (parent as Record<string, unknown>)[token];
  }
  if (Array.isArray(parent) && Number(last) > parent.length) {
    throw new FhirError(
      422,
      'processing',
      `JSON Patch operation ${n} (${op.op}) targets index ${last.slice(0, 12)} of an array of ${parent.length} elements at ${op.path.slice(0, 200)}: at most ${parent.length} (RFC 6902 §4.1)`,
      [`[${n}]`],
    );
  }
}
