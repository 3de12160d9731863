import type { OperationOutcome, OperationOutcomeIssue } from '@medplum/fhirtypes';

/** FHIR issue-type codes we raise (http://hl7.org/fhir/ValueSet/issue-type). */
export type IssueCode =
  | 'invalid'
  | 'structure'
  | 'required'
  | 'value'
  | 'invariant'
  | 'security'
  | 'login'
  | 'forbidden'
  | 'suppressed'
  | 'processing'
  | 'not-supported'
  | 'duplicate'
  | 'multiple-matches'
  | 'not-found'
  | 'deleted'
  | 'too-long'
  | 'code-invalid'
  | 'conflict'
  | 'throttled'
  | 'transient'
  | 'exception'
  | 'too-costly'
  | 'business-rule'
  | 'informational'
  | 'expired'
  | 'transient';

/**
 * A domain error that knows its HTTP status and FHIR issue code. The global filter turns it into an
 * OperationOutcome; nothing else in the code base formats error responses.
 */
export class FhirError extends Error {
  readonly issues: OperationOutcomeIssue[];
  readonly headers: Record<string, string>;

  constructor(
    readonly status: number,
    code: IssueCode | OperationOutcomeIssue[],
    diagnostics?: string,
    expression?: string[],
    headers: Record<string, string> = {},
  ) {
    const issues: OperationOutcomeIssue[] = Array.isArray(code)
      ? code
      : [{ severity: 'error', code, diagnostics, ...(expression ? { expression } : {}) }];
    super(diagnostics ?? issues.map((i) => i.diagnostics ?? i.details?.text).join('; '));
    this.issues = issues;
    this.headers = headers;
  }

  toOperationOutcome(): OperationOutcome {
    return { resourceType: 'OperationOutcome', issue: this.issues };
  }

  static badRequest(diagnostics: string, expression?: string[], code: IssueCode = 'invalid'): FhirError {
    return new FhirError(400, code, diagnostics, expression);
  }
  static notFound(diagnostics: string): FhirError {
    return new FhirError(404, 'not-found', diagnostics);
  }
  static gone(diagnostics: string): FhirError {
    return new FhirError(410, 'deleted', diagnostics);
  }
  static conflict(diagnostics: string): FhirError {
    return new FhirError(409, 'conflict', diagnostics);
  }
  static preconditionFailed(diagnostics: string): FhirError {
    return new FhirError(412, 'conflict', diagnostics);
  }
  static forbidden(diagnostics: string): FhirError {
    return new FhirError(403, 'forbidden', diagnostics);
  }
  static unauthorized(diagnostics: string): FhirError {
    return new FhirError(401, 'login', diagnostics, undefined, { 'WWW-Authenticate': 'Bearer' });
  }
  /** 503 `transient`: a dependency (the database) is away; the client may retry after `retryAfterSeconds`. */
  static unavailable(diagnostics: string, retryAfterSeconds = 5): FhirError {
    return new FhirError(503, 'transient', diagnostics, undefined, { 'Retry-After': String(retryAfterSeconds) });
  }
  static notSupported(diagnostics: string, status = 400): FhirError {
    return new FhirError(status, 'not-supported', diagnostics);
  }
}

export function operationOutcome(
  severity: OperationOutcomeIssue['severity'],
  code: IssueCode,
  diagnostics: string,
): OperationOutcome {
  return { resourceType: 'OperationOutcome', issue: [{ severity, code, diagnostics }] };
}
