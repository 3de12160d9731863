import type { Response } from 'express';
import { resourceToXml } from '../fhir-xml';

/** The representation a FHIR response is written in, negotiated once per request (FhirHttpMiddleware). */
export type FhirFormat = 'json' | 'xml';

export const FHIR_JSON_TYPE = 'application/fhir+json; charset=utf-8';
export const FHIR_XML_TYPE = 'application/fhir+xml; charset=utf-8';

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
  if (fhirFormatOf(res) === 'xml') res.type(FHIR_XML_TYPE).send(resourceToXml(body, pretty));
  else res.type(FHIR_JSON_TYPE).send(pretty ? JSON.stringify(body, null, 2) : JSON.stringify(body));
}
