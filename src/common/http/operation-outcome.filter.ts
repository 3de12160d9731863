import { ArgumentsHost, Catch, ExceptionFilter, HttpException, Logger } from '@nestjs/common';
import type { Request, Response } from 'express';
import { databaseUnavailable, isDatabaseUnavailable } from '../database-unavailable';
import { fromDatabaseError } from '../database-error';
import { FhirError, IssueCode } from '../fhir-error';
import { RequestContext } from '../request-context';
import { RefusedRequestAudit } from './refused-request.audit';
import { sendFhirBody } from './fhir-format';
import { requestIdOf } from './request-id';

const HTTP_ISSUE: Record<number, IssueCode> = {
  400: 'invalid',
  401: 'login',
  403: 'forbidden',
  404: 'not-found',
  405: 'not-supported',
  406: 'not-supported',
  409: 'conflict',
  410: 'deleted',
  412: 'conflict',
  413: 'too-long',
  415: 'not-supported',
  422: 'processing',
  429: 'throttled',
  503: 'transient',
};

/**
 * Every failure leaves as an OperationOutcome. Unexpected errors become 500 with the request id
 * only: no stack, SQL or resource content reaches the client or the log message.
 */
@Catch()
export class OperationOutcomeFilter implements ExceptionFilter {
  private readonly logger = new Logger('Errors');

  constructor(private readonly audit: RefusedRequestAudit) {}

  async catch(exception: unknown, host: ArgumentsHost): Promise<void> {
    const http = host.switchToHttp();
    const req = http.getRequest<Request>();
    const res = http.getResponse<Response>();
    const requestId = requestIdOf(req);
    const error = this.toFhirError(exception, requestId, req);
    // Refused before any stage recorded it (406, 413, 415, malformed query, no route): still one record.
    if (!RequestContext.wasAudited()) await this.auditRefusal(req, requestId, error);
    if (res.headersSent) return;
    for (const [k, v] of Object.entries(error.headers)) res.setHeader(k, v);
    res.setHeader('X-Request-Id', requestId);
    // In the negotiated format: an XML client gets its errors in XML too.
    sendFhirBody(res.status(error.status), error.toOperationOutcome());
  }

  private async auditRefusal(req: Request, requestId: string, error: FhirError): Promise<void> {
    try {
      await this.audit.record({
        method: req.method,
        requestId,
        user: (req as Request & { user?: unknown }).user,
        address: req.ip,
        path: req.path.slice(0, 200),
        status: error.status,
        failureCode: error.issues[0]?.code,
      });
    } catch {
      // The request is refused either way; a failing audit store is reported by the stage itself.
      this.logger.error({ msg: 'audit of a refused request failed', requestId });
    }
  }

  private toFhirError(exception: unknown, requestId: string, req: Request): FhirError {
    if (exception instanceof FhirError) return exception;
    if (isDatabaseUnavailable(exception)) {
      // An outage, not a bug: the client retries; the log says which request met it, nothing more.
      this.logger.warn({ msg: 'database unavailable', requestId, code: (exception as { code?: string })?.code });
      return databaseUnavailable();
    }
    if (exception instanceof HttpException) {
      const status = exception.getStatus();
      const headers: Record<string, string> = {};
      const retryAfter = (exception.getResponse() as { retryAfter?: number })?.retryAfter;
      if (retryAfter) headers['Retry-After'] = String(retryAfter);
      const message =
        status === 404 ? `No route for ${req.method} ${req.path.slice(0, 200)}` : httpMessage(exception);
      return new FhirError(status, HTTP_ISSUE[status] ?? (status >= 500 ? 'exception' : 'invalid'), message, undefined, headers);
    }
    const e = exception as { status?: number; type?: string };
    if (e?.type === 'entity.too.large') return new FhirError(413, 'too-long', 'The request body is too large');
    const cancelled = fromDatabaseError(exception);
    if (cancelled) return cancelled;
    // Log only the error class and code; messages of driver errors can quote values.
    this.logger.error({
      msg: 'unexpected error',
      requestId,
      error: (exception as Error)?.constructor?.name,
      code: (exception as { code?: string })?.code,
      frames: (exception as Error)?.stack?.split('\n').slice(1, 6).join('\n'),
    });
    return new FhirError(500, 'exception', `Internal server error (request id ${requestId})`);
  }
}

function httpMessage(e: HttpException): string {
  const r = e.getResponse();
  if (typeof r === 'string') return r;
  const m = (r as { message?: unknown }).message;
  return Array.isArray(m) ? m.join('; ') : typeof m === 'string' ? m : e.message;
}
