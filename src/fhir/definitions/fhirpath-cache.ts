import { FhirPathAtom, LRUCache } from '@medplum/core';

/**
 * Parsed FHIRPath expressions by their text, for evaluations on the write path (search index
 * extraction, patient compartments): parsing a search parameter's expression costs more than
 * evaluating it. A pure memo of a function of the text, bounded because stored SearchParameters
 * add expressions.
 */
export const fhirPathCache = new LRUCache<FhirPathAtom>(10_000);
