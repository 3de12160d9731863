import { Inject, Injectable, NestMiddleware } from '@nestjs/common';
import { isUtf8 } from 'node:buffer';
import type { IncomingMessage } from 'node:http';
import express, { NextFunction, Request, Response } from 'express';
import { FhirError } from '../fhir-error';
import { parseJsonKeepingDecimals } from '../fhir-json';
import { assertJsonShape, decodeUtf8MarkingInvalid } from '../json-shape';
import { RequestContext } from '../request-context';
import { FHIR_HTTP_OPTIONS, FhirHttpOptions } from './fhir-http.options';
import { requestIdOf } from './request-id';

const JSON_TYPES = ['application/fhir+json', 'application/json', 'application/json+fhir', 'application/json-patch+json'];
const FORM_TYPE = 'application/x-www-form-urlencoded';
/** FHIR resources (create, update, Bundles, operation Parameters). */
const RESOURCE_TYPES = ['application/fhir+json', 'application/json', 'application/json+fhir'];
/** PATCH: a JSON Patch document or a FHIRPath Patch Parameters resource. */
const PATCH_TYPES = [...RESOURCE_TYPES, 'application/json-patch+json'];
const JSON_FORMATS = new Set(['json', 'application/json', 'application/fhir+json', 'application/json+fhir', 'text/json']);
const XML_RE = /xml/i;
/** Longest request target (path and query) served; longer searches go by POST `_search` (docs/security.md). */
export const MAX_URL_LENGTH = 16 * 1024;

/**
 * HTTP concerns in front of the FHIR API: request id and context, content negotiation (JSON only),
 * and body parsing with a size limit. Errors are thrown (not passed to next) so the global
 * OperationOutcome filter answers them.
 */
@Injectable()
export class FhirHttpMiddleware implements NestMiddleware {
  private readonly json: express.RequestHandler;
  private readonly form: express.RequestHandler;
  private readonly fhirBasePath: string;

  constructor(@Inject(FHIR_HTTP_OPTIONS) config: FhirHttpOptions) {
    this.fhirBasePath = config.fhirBasePath;
    // Read as text and parsed by parseJsonKeepingDecimals, so decimals keep their precision
    // (`1.50` stays `1.50`, common/fhir-json.ts).
    this.json = express.text({ limit: config.bodyLimit, type: JSON_TYPES, defaultCharset: 'utf-8', verify: keepInvalidUtf8 });
    this.form = express.urlencoded({ limit: config.bodyLimit, type: FORM_TYPE, extended: false });
  }

  async use(req: Request, res: Response, next: NextFunction): Promise<void> {
    const requestId = requestIdOf(req);
    res.setHeader('X-Request-Id', requestId);
    await RequestContext.run({ requestId }, async () => {
      if (req.originalUrl.length > MAX_URL_LENGTH) {
        throw new FhirError(414, 'too-long', `The URL is longer than ${MAX_URL_LENGTH} characters; send a long search as POST [type]/_search with a form body`);
      }
      this.negotiate(req);
      await this.parseBody(req, res);
      next();
    });
  }

  private negotiate(req: Request): void {
    const format = req.query._format;
    if (format !== undefined) {
      const f = String(Array.isArray(format) ? format[0] : format).toLowerCase();
      if (!JSON_FORMATS.has(f)) {
        throw new FhirError(406, 'not-supported', `_format '${f}' is not supported: this server speaks JSON only (application/fhir+json)`, ['_format']);
      }
      return;
    }
    const accept = req.headers.accept;
    if (accept && !/(\*\/\*|application\/\*|json)/i.test(accept)) {
      throw new FhirError(
        406,
        'not-supported',
        XML_RE.test(accept)
          ? 'XML is not supported: this server speaks JSON only (application/fhir+json)'
          : `None of the accepted media types (${accept.slice(0, 100)}) is supported; use application/fhir+json`,
      );
    }
  }

  private async parseBody(req: Request, res: Response): Promise<void> {
    if (!['POST', 'PUT', 'PATCH'].includes(req.method)) return;
    const hasBody = Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined;
    if (!hasBody) return;
    const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
    const accepted = this.acceptedTypes(req);
    const isJson = JSON_TYPES.includes(type);
    if (!accepted.includes(type)) {
      throw new FhirError(
        415,
        'not-supported',
        XML_RE.test(type)
          ? 'XML request bodies are not supported: send application/fhir+json'
          : `Content-Type '${type || '(none)'}' is not supported here: send ${accepted.includes('application/fhir+json') ? 'application/fhir+json' : accepted.join(' or ')}`,
        ['Content-Type'],
      );
    }
    await new Promise<void>((resolve, reject) => {
      (isJson ? this.json : this.form)(req, res, (err?: unknown) => (err ? reject(bodyError(err)) : resolve()));
    });
    if (isJson) {
      req.body = parseJsonBody((req as BodyWithInvalidUtf8).utf8Marked ?? req.body);
      assertJsonShape(req.body);
    }
  }

  /**
   * FHIR writes take FHIR JSON only (a form body must never become a resource); a search by POST
   * takes a form (search.html), an operation either. Outside the FHIR base (token endpoint, admin
   * API) JSON and forms, as before.
   */
  private acceptedTypes(req: Request): string[] {
    const path = req.originalUrl.split('?', 1)[0];
    if (path !== this.fhirBasePath && !path.startsWith(`${this.fhirBasePath}/`)) return [...JSON_TYPES, FORM_TYPE];
    if (req.method === 'POST' && path.endsWith('/_search')) return [FORM_TYPE];
    if (req.method === 'POST' && /\/\$[^/]*$/.test(path)) return [...RESOURCE_TYPES, FORM_TYPE];
    return req.method === 'PATCH' ? PATCH_TYPES : RESOURCE_TYPES;
  }
}

type BodyWithInvalidUtf8 = IncomingMessage & { utf8Marked?: string };

/**
 * The body parser's decoder turns bytes that are not UTF-8 into U+FFFD, silently. Before it runs,
 * such a body is decoded again with those bytes marked, and parsed from that text, so the check of
 * the parsed JSON refuses it naming the element (json-shape.ts). Valid UTF-8 costs one native scan.
 */
function keepInvalidUtf8(req: IncomingMessage, _res: unknown, bytes: Buffer, encoding: string): void {
  if (/^utf-?8$/i.test(encoding) && !isUtf8(bytes)) (req as BodyWithInvalidUtf8).utf8Marked = decodeUtf8MarkingInvalid(bytes);
}

function parseJsonBody(text: unknown): unknown {
  // Not a string: parsed already (the middleware runs again for the same request), or no body.
  if (typeof text !== 'string') return text ?? {};
  if (text.trim() === '') return {};
  try {
    return parseJsonKeepingDecimals(text);
  } catch (err) {
    throw bodyError({ type: 'entity.parse.failed', message: (err as Error).message });
  }
}

function bodyError(err: unknown): FhirError {
  const e = err as { type?: string; status?: number; limit?: number; message?: string };
  if (e.type === 'entity.too.large' || e.status === 413) {
    return new FhirError(413, 'too-long', `The request body exceeds the limit of ${e.limit ?? '?'} bytes`);
  }
  if (e.type === 'entity.parse.failed') {
    // The parser's message quotes part of the body; say where, not what.
    const pos = /position (\d+)/.exec(e.message ?? '')?.[1];
    return FhirError.badRequest(`The request body is not valid JSON${pos ? ` (error at character ${pos})` : ''}`, undefined, 'structure');
  }
  if (e.type === 'charset.unsupported' || e.type === 'encoding.unsupported') {
    return new FhirError(415, 'not-supported', 'Unsupported body charset or encoding');
  }
  return new FhirError(e.status && e.status < 500 ? e.status : 400, 'invalid', 'The request body could not be read');
}
