import type { OperationOutcomeIssue, Resource } from '@medplum/fhirtypes';
import type { EntityManager } from 'typeorm';
import { FhirError } from '../../common/fhir-error';
import { cloneJson } from '../../common/fhir-json';
import { FhirDefinitions } from '../definitions/fhir-definitions';
import type { ResourceMatcher } from '../storage/resource-matcher';
import type { AccessContext } from './access-context';
import { parseQueryString } from './query-params';

/** `Practitioner?identifier=…`: a search where a `Type/id` belongs (R4 http.html#trules). */
const CONDITIONAL_REFERENCE_RE = /^[A-Z][A-Za-z]+\?/;

/** A Reference.reference in a resource, with its element path (`Encounter.participant[0].individual.reference`). */
interface ReferenceAt {
  holder: { reference: string };
  path: string;
}

function* referencesIn(node: unknown, path: string): Generator<ReferenceAt> {
  if (Array.isArray(node)) {
    for (const [n, item] of node.entries()) yield* referencesIn(item, `${path}[${n}]`);
  } else if (node && typeof node === 'object') {
    const obj = node as Record<string, unknown>;
    if (typeof obj.reference === 'string') yield { holder: obj as { reference: string }, path: `${path}.reference` };
    for (const [key, value] of Object.entries(obj)) {
      if (key !== 'reference' && value && typeof value === 'object') yield* referencesIn(value, `${path}.${key}`);
    }
  }
}

/**
 * Conditional references outside a transaction (the server's extension to R4, which defines them
 * for transactions only; README "Conditional references"): every `Type?criteria` reference in the
 * resource (nested elements, extensions, contained resources) is resolved exactly as a
 * transaction resolves one — a search under the client's own access (`ctx.lookup`), so a match it
 * may not see neither resolves nor shows — and rewritten to `Type/id`. None or several matches is
 * 412 naming the reference and its element path; nothing is stored. Returns the resource unchanged
 * when it has none, else a copy with them rewritten (a rerun of the interaction resolves afresh).
 */
export async function resolveConditionalReferences<T extends Resource>(
  ctx: AccessContext,
  resource: T,
  matcher: ResourceMatcher,
  tx: EntityManager,
): Promise<T> {
  const root = resource.resourceType;
  if (!hasConditionalReference(resource)) return resource;
  const copy = cloneJson(resource);
  const found = [...referencesIn(copy, root)].filter((r) => CONDITIONAL_REFERENCE_RE.test(r.holder.reference));
  const resolved = new Map<string, string[]>();
  const issues: OperationOutcomeIssue[] = [];
  for (const { holder, path } of found) {
    const reference = holder.reference;
    let targets = resolved.get(reference);
    if (!targets) {
      const [type, criteria] = reference.split('?', 2);
      if (!FhirDefinitions.get().isStorable(type)) throw FhirError.badRequest(`Conditional reference to unknown type '${type}'`, [path]);
      try {
        const searchCtx = await ctx.lookup('search-type', type, parseQueryString(criteria));
        targets = (await matcher.matchIds(searchCtx, type, criteria, tx)).map((id) => `${type}/${id}`);
      } catch (err) {
        // Bad criteria (400) or no right to search the type (403): said of this reference.
        throw err instanceof FhirError ? new FhirError(err.status, err.issues.map((i) => ({ ...i, expression: [path] })), undefined, undefined, err.headers) : err;
      }
      resolved.set(reference, targets);
    }
    if (targets.length === 1) {
      holder.reference = targets[0];
      continue;
    }
    issues.push({
      severity: 'error',
      code: targets.length ? 'multiple-matches' : 'not-found',
      diagnostics: `Conditional reference '${reference.slice(0, 200)}' matches ${targets.length > 1000 ? 'more than 1000' : targets.length} resources; it must match exactly one`,
      expression: [path],
    });
  }
  if (issues.length) throw new FhirError(412, issues);
  return copy;
}

/** Element path of the first place `reference` occurs in a resource, for an OperationOutcome's expression. */
export function referencePath(resource: unknown, reference: string): string | undefined {
  const root = (resource as { resourceType?: unknown } | undefined)?.resourceType;
  if (typeof root !== 'string') return undefined;
  for (const r of referencesIn(resource, root)) if (r.holder.reference === reference) return r.path;
  return undefined;
}

/** Every write asks this, so it is a plain walk that builds no paths and stops at the first. */
function hasConditionalReference(node: unknown): boolean {
  if (Array.isArray(node)) return node.some(hasConditionalReference);
  if (!node || typeof node !== 'object') return false;
  // for-in, not Object.entries: no array per object of every entry of every Bundle.
  for (const key in node) {
    const value = (node as Record<string, unknown>)[key];
    if (key === 'reference' ? typeof value === 'string' && CONDITIONAL_REFERENCE_RE.test(value) : typeof value === 'object' && hasConditionalReference(value)) return true;
  }
  return false;
}
