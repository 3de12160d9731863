import type { Response } from 'express';
import { resourceToXml } from '../fhir-xml';
import { sendText } from './one-shot-compression';

/** The representation a FHIR response is written in, negotiated once per request (FhirHttpMiddleware). */
export type FhirFormat = 'json' | 'xml';

export const FHIR_JSON_TYPE = 'application/fhir+json; charset=utf-8';
export const FHIR_XML_TYPE = 'application/fhir+xml; charset=utf-8';

/** FHIR XML (xml.html); `application/xml+fhir` is the DSTU2 name some engines still send. */
export const FHIR_XML_TYPES = ['application/fhir+xml', 'application/xml', 'text/xml', 'application/xml+fhir'];
/** What `Accept` may ask for under the FHIR base, JSON first so a wildcard (and a tie) gets JSON. */
export const FHIR_ACCEPTABLE = ['application/fhir+json', 'application/json', 'application/json+fhir', 'text/json', ...FHIR_XML_TYPES];

const FORMAT_KEY = 'fhirFormat';

export function setFhirFormat(res: Response, format: FhirFormat): void {
  res.locals[FORMAT_KEY] = format;
}

/** JSON unless the request negotiated XML (and before negotiation, e.g. a 406 about it). */
export function fhirFormatOf(res: Response): FhirFormat {
  return res.locals[FORMAT_KEY] === 'xml' ? 'xml' : 'json';
}

/** Writes a resource (or OperationOutcome) in the negotiated format; the answer varies by Accept. */
export function sendFhirBody(res: Response, body: object, pretty = false): void {
  res.vary('Accept');
  if (fhirFormatOf(res) === 'xml') sendText(res, FHIR_XML_TYPE, resourceToXml(body, pretty));
  else sendText(res, FHIR_JSON_TYPE, pretty ? JSON.stringify(body, null, 2) : JSON.stringify(body));
}

/**
 * The candidate `Accept` ranks highest (RFC 9110 §12.5.1: the most specific matching range gives
 * its q; on equal q a named type beats a wildcard match, then earlier candidates win). Media type
 * parameters other than q are ignored, so `application/fhir+json; fhirVersion=4.0` (versioning.html)
 * matches.
 */
export function preferredType(accept: string, candidates: readonly string[]): string | undefined {
  const ranges = accept.split(',').map((part) => {
    const [range, ...params] = part.split(';').map((x) => x.trim().toLowerCase());
    const q = params.find((p) => p.startsWith('q='));
    return { range, q: q === undefined ? 1 : Number(q.slice(2)) || 0 };
  });
  let best: string | undefined;
  let bestQ = 0;
  let bestSpecificity = -1;
  for (const candidate of candidates) {
    let q = -1;
    let specificity = -1;
    for (const r of ranges) {
      const s = r.range === candidate ? 2 : r.range === `${candidate.split('/')[0]}/*` ? 1 : r.range === '*/*' ? 0 : -1;
      if (s > specificity) [specificity, q] = [s, r.q];
    }
    // Equal q: the type the client named beats one it only allowed by a wildcard.
    if (q > bestQ || (q === bestQ && q > 0 && specificity > bestSpecificity)) [best, bestQ, bestSpecificity] = [candidate, q, specificity];
  }
  return best;
}
