import { Readable } from 'node:stream';
import type { Binary } from '@medplum/fhirtypes';
import type { Response } from 'express';
import { FhirError } from '../fhir-error';
import { FHIR_ACCEPTABLE, preferredType } from './fhir-format';

/** The only reference form a Binary's security context may take here: a relative `Type/id`. */
export const SECURITY_CONTEXT_RE = /^[A-Z][A-Za-z]{1,63}\/[A-Za-z0-9\-.]{1,64}$/;

/**
 * `POST {base}/Binary` and `PUT {base}/Binary/{id}` with a non-FHIR body (http.html#binary): the body
 * is the content itself. Answers the id of a PUT (or `null` for a POST), undefined for other routes.
 */
export function rawBinaryWrite(method: string, path: string, fhirBasePath: string): { id: string | null } | undefined {
  const rest = path.slice(fhirBasePath.length);
  if (method === 'POST' && rest === '/Binary') return { id: null };
  const put = method === 'PUT' ? /^\/Binary\/([^/]+)$/.exec(rest) : null;
  return put ? { id: decodeURIComponent(put[1]) } : undefined;
}

/**
 * The Binary a raw body stands for: `contentType` from `Content-Type` (parameters such as charset
 * kept), `data` base64, `securityContext` from `X-Security-Context` (R4 http.html#binary).
 */
export function binaryFromRawBody(body: Buffer, contentType: string, securityContext: string | undefined, id: string | null): Binary {
  const ref = securityContext?.trim();
  if (ref !== undefined && !SECURITY_CONTEXT_RE.test(ref)) {
    throw FhirError.badRequest('X-Security-Context must be a relative reference such as DocumentReference/123', ['X-Security-Context']);
  }
  return {
    resourceType: 'Binary',
    ...(id !== null ? { id } : {}),
    contentType: contentType.replace(/\s*;\s*/g, '; ').trim(),
    ...(ref ? { securityContext: { reference: ref } } : {}),
    data: body.toString('base64'),
  };
}

/**
 * How a Binary read answers (http.html#binary): `native` (the content, as `contentType`) when the
 * Accept header ranks the Binary's own type above the FHIR formats, `fhir` (the Binary resource)
 * when `_format` is given, there is no Accept, or a FHIR format ranks at least as high; `none`
 * when the client accepts neither (406).
 */
export function binaryRepresentation(accept: string | undefined, format: unknown, contentType: string | undefined): 'native' | 'fhir' | 'none' {
  if (format !== undefined || !accept || !contentType) return 'fhir';
  const own = contentType.split(';', 1)[0].trim().toLowerCase();
  const best = preferredType(accept, [...FHIR_ACCEPTABLE, own]);
  if (!best) return 'none';
  return best === own && !FHIR_ACCEPTABLE.includes(own) ? 'native' : 'fhir';
}

/** Base64 characters per chunk when a Binary is written out (a multiple of 4: 65,538 bytes). */
const CHUNK_BASE64 = 87_384;

/**
 * Sends a Binary's content as its own media type, decoding the base64 in 64 KiB slices through a
 * stream (backpressure; the decoded bytes never exist as one second copy). Sandboxed by CSP so
 * uploaded HTML or SVG cannot script the API's origin; the security context goes back in
 * `X-Security-Context`.
 */
export function sendBinaryContent(res: Response, binary: Binary): void {
  const data = (binary.data ?? '').replace(/\s+/g, '');
  const padding = data.endsWith('==') ? 2 : data.endsWith('=') ? 1 : 0;
  res.setHeader('Content-Type', binary.contentType);
  if (data.length % 4 === 0) res.setHeader('Content-Length', String((data.length / 4) * 3 - padding));
  res.setHeader('Content-Security-Policy', "sandbox; default-src 'none'");
  if (binary.securityContext?.reference) res.setHeader('X-Security-Context', binary.securityContext.reference);
  res.vary('Accept');
  Readable.from(base64Chunks(data)).pipe(res);
}

function* base64Chunks(data: string): Generator<Buffer> {
  for (let i = 0; i < data.length; i += CHUNK_BASE64) yield Buffer.from(data.slice(i, i + CHUNK_BASE64), 'base64');
}
