/** A request refused before any pipeline stage recorded it (406, 413, 415, malformed query, no route). */
export interface RefusedRequest {
  method: string;
  requestId: string;
  /** The authenticated principal on the request, when authentication ran. */
  user?: unknown;
  address?: string;
  path: string;
  status: number;
  failureCode?: string;
}

/**
 * How the error filter has a refused request audited. Bound by the audit layer (AppModule binds
 * `RefusedRequestAuditRecorder`), so `common/` knows nothing of the audit model.
 */
export abstract class RefusedRequestAudit {
  abstract record(refusal: RefusedRequest): Promise<void>;
}
