import { Inject, Injectable, NestMiddleware } from '@nestjs/common';
import { isUtf8 } from 'node:buffer';
import type { IncomingMessage } from 'node:http';
import express, { NextFunction, Request, Response } from 'express';
import { FhirError } from '../fhir-error';
import { parseJsonKeepingDecimals } from '../fhir-json';
import { parseFhirXml } from '../fhir-xml';
import { assertJsonShape, decodeUtf8MarkingInvalid } from '../json-shape';
import { RequestContext } from '../request-context';
import { binaryFromRawBody, rawBinaryWrite } from './binary-body';
import { FHIR_ACCEPTABLE, FHIR_XML_TYPES, FhirFormat, preferredType, setFhirFormat } from './fhir-format';
import { FHIR_HTTP_OPTIONS, FhirHttpOptions } from './fhir-http.options';
import { requestIdOf } from './request-id';

const JSON_TYPES = ['application/fhir+json', 'application/json', 'application/json+fhir', 'application/json-patch+json'];
const FORM_TYPE = 'application/x-www-form-urlencoded';
/** FHIR resources (create, update, Bundles, operation Parameters), as JSON or XML. */
const RESOURCE_TYPES = ['application/fhir+json', 'application/json', 'application/json+fhir', ...FHIR_XML_TYPES];
/** PATCH: a JSON Patch document or a FHIRPath Patch Parameters resource. */
const PATCH_TYPES = [...RESOURCE_TYPES, 'application/json-patch+json'];
/** Outside the FHIR base. */
const JSON_ACCEPTABLE = ['application/json', 'application/fhir+json'];
const JSON_FORMATS = new Set(['json', 'application/json', 'application/fhir+json', 'application/json+fhir', 'text/json']);
const XML_FORMATS = new Set(['xml', ...FHIR_XML_TYPES]);
/** Longest request target (path and query) served; longer searches go by POST `_search` (docs/security.md). */
export const MAX_URL_LENGTH = 16 * 1024;

/**
 * HTTP concerns in front of the FHIR API: request id and context, content negotiation (FHIR JSON
 * or XML, fhir-format.ts), and body parsing with a size limit. Errors are thrown (not passed to
 * next) so the global OperationOutcome filter answers them.
 */
@Injectable()
export class FhirHttpMiddleware implements NestMiddleware {
  private readonly json: express.RequestHandler;
  private readonly xml: express.RequestHandler;
  private readonly form: express.RequestHandler;
  private readonly raw: express.RequestHandler;
  private readonly fhirBasePath: string;

  constructor(@Inject(FHIR_HTTP_OPTIONS) config: FhirHttpOptions) {
    this.fhirBasePath = config.fhirBasePath;
    // Read as text and parsed by parseJsonKeepingDecimals, so decimals keep their precision
    // (`1.50` stays `1.50`, common/fhir-json.ts).
    this.json = express.text({ limit: config.bodyLimit, type: JSON_TYPES, defaultCharset: 'utf-8', verify: keepInvalidUtf8 });
    this.xml = express.text({ limit: config.bodyLimit, type: FHIR_XML_TYPES, defaultCharset: 'utf-8', verify: keepInvalidUtf8 });
    this.form = express.urlencoded({ limit: config.bodyLimit, type: FORM_TYPE, extended: false });
    this.raw = express.raw({ limit: config.binaryLimit, type: () => true });
  }

  async use(req: Request, res: Response, next: NextFunction): Promise<void> {
    const requestId = requestIdOf(req);
    res.setHeader('X-Request-Id', requestId);
    await RequestContext.run({ requestId }, async () => {
      if (req.originalUrl.length > MAX_URL_LENGTH) {
        throw new FhirError(414, 'too-long', `The URL is longer than ${MAX_URL_LENGTH} characters; send a long search as POST [type]/_search with a form body`);
      }
      setFhirFormat(res, this.negotiate(req));
      await this.parseBody(req, res);
      next();
    });
  }

  /**
   * The response format: `_format` wins over `Accept` (http.html#mime-type); `Accept` by its
   * q-values, JSON on a tie or for any type. Outside the FHIR base (token endpoint, admin API) JSON only.
   */
  private negotiate(req: Request): FhirFormat {
    const format = req.query._format;
    if (format !== undefined) {
      const f = String(Array.isArray(format) ? format[0] : format).toLowerCase();
      if (JSON_FORMATS.has(f)) return 'json';
      if (XML_FORMATS.has(f) && this.isFhirPath(req)) return 'xml';
      throw new FhirError(406, 'not-supported', `_format '${f.slice(0, 64)}' is not supported: use json or xml`, ['_format']);
    }
    const accept = req.headers.accept;
    if (!accept) return 'json';
    const best = preferredType(accept, this.isFhirPath(req) ? FHIR_ACCEPTABLE : JSON_ACCEPTABLE);
    if (best) return FHIR_XML_TYPES.includes(best) ? 'xml' : 'json';
    // A Binary read may ask for its content type (application/pdf): the response writer decides
    // once it knows the Binary's contentType (http.html#binary).
    if (req.method === 'GET' && this.isFhirPath(req) && isBinaryRead(req.originalUrl.split('?', 1)[0].slice(this.fhirBasePath.length))) return 'json';
    throw new FhirError(
      406,
      'not-supported',
      `None of the accepted media types (${accept.slice(0, 100)}) is supported; use application/fhir+json or application/fhir+xml`,
    );
  }

  private isFhirPath(req: Request): boolean {
    const path = req.originalUrl.split('?', 1)[0];
    return path === this.fhirBasePath || path.startsWith(`${this.fhirBasePath}/`);
  }

  private async parseBody(req: Request, res: Response): Promise<void> {
    if (!['POST', 'PUT', 'PATCH'].includes(req.method)) return;
    const hasBody = Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined;
    if (!hasBody) return;
    const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
    const accepted = this.acceptedTypes(req);
    const isJson = JSON_TYPES.includes(type);
    const isXml = FHIR_XML_TYPES.includes(type);
    const binary = isJson || isXml || !type || type === FORM_TYPE || !this.isFhirPath(req) ? undefined : rawBinaryWrite(req.method, req.originalUrl.split('?', 1)[0], this.fhirBasePath);
    if (binary) {
      // A Binary in its native format (http.html#binary): the body is the content, up to BINARY_LIMIT.
      await new Promise<void>((resolve, reject) => this.raw(req, res, (err?: unknown) => (err ? reject(bodyError(err)) : resolve())));
      const securityContext = req.headers['x-security-context'];
      // Already turned into a Binary when the middleware runs again for the same request.
      if (!Buffer.isBuffer(req.body)) return;
      req.body = binaryFromRawBody(req.body, req.headers['content-type']!, Array.isArray(securityContext) ? securityContext[0] : securityContext, binary.id);
      return;
    }
    if (!accepted.includes(type)) {
      throw new FhirError(
        415,
        'not-supported',
        `Content-Type '${type.slice(0, 100) || '(none)'}' is not supported here: send ${accepted.includes('application/fhir+json') ? 'application/fhir+json or application/fhir+xml' : accepted.join(' or ')}`,
        ['Content-Type'],
      );
    }
    await new Promise<void>((resolve, reject) => {
      (isJson ? this.json : isXml ? this.xml : this.form)(req, res, (err?: unknown) => (err ? reject(bodyError(err)) : resolve()));
    });
    if (isJson) req.body = parseJsonBody((req as BodyWithInvalidUtf8).utf8Marked ?? req.body);
    // The XML body becomes FHIR JSON here, so nothing past the middleware knows it was XML.
    if (isXml) req.body = typeof req.body === 'string' ? parseFhirXml((req as BodyWithInvalidUtf8).utf8Marked ?? req.body) : req.body;
    if (isJson || isXml) assertJsonShape(req.body);
  }

  /**
   * FHIR writes take FHIR JSON only (a form body must never become a resource); a search by POST
   * takes a form (search.html), an operation either. Outside the FHIR base (token endpoint, admin
   * API) JSON and forms, as before.
   */
  private acceptedTypes(req: Request): string[] {
    const path = req.originalUrl.split('?', 1)[0];
    if (!this.isFhirPath(req)) return [...JSON_TYPES, FORM_TYPE];
    if (req.method === 'POST' && path.endsWith('/_search')) return [FORM_TYPE];
    if (req.method === 'POST' && /\/\$[^/]*$/.test(path)) return [...RESOURCE_TYPES, FORM_TYPE];
    return req.method === 'PATCH' ? PATCH_TYPES : RESOURCE_TYPES;
  }
}

/** `Binary/{id}` or `Binary/{id}/_history/{vid}` under the FHIR base. */
export function isBinaryRead(rest: string): boolean {
  return /^\/Binary\/[A-Za-z0-9\-.]{1,64}(\/_history\/[^/$]+)?$/.test(rest);
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
