import { FhirError } from '../../common/fhir-error';

/**
 * What one request may ask of the database (docs/security.md, "Input limits and query cost").
 * Each bound is well above what clinical searches use; past it the request is refused with 400
 * `too-costly` naming the limit, before any SQL runs. DB_STATEMENT_TIMEOUT_MS bounds the rest.
 */
export const SEARCH_LIMITS = {
  /** AND-ed parameter clauses (each occurrence of a parameter, chains and `_has` included), per resource type. */
  clauses: 20,
  /** Comma-separated OR values of one parameter occurrence. */
  orValues: 100,
  /** Links of one chain: `subject:Patient.organization.partof.name` has 3. */
  chainDepth: 3,
  /** `_has` nested in `_has`: `_has:Observation:subject:_has:Observation:has-member:_id` has 2. */
  hasDepth: 2,
  /** `_include` and `_revinclude` parameters (with `:iterate`) together. */
  includes: 10,
  /** Resources added by `_include`/`_revinclude` to one page. */
  includedResources: 1000,
  /** Levels of `:iterate`. */
  iterateDepth: 3,
  /** Keys of `_sort`. */
  sortKeys: 5,
} as const;

/** Entries of one batch or transaction Bundle (above the largest Synthea patient Bundle and bench:ingest's 10,000). */
export const MAX_BUNDLE_ENTRIES = 10_000;

export function tooCostly(diagnostics: string, expression: string): FhirError {
  return FhirError.badRequest(diagnostics, [expression], 'too-costly');
}
