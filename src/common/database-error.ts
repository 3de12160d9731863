import { databaseUnavailable, isDatabaseUnavailable } from './database-unavailable';
import { FhirError } from './fhir-error';

/** SQLSTATE query_canceled: PostgreSQL cancelled the statement (statement_timeout, or a cancel request). */
const QUERY_CANCELED = '57014';

/**
 * A statement PostgreSQL cancelled is the server refusing work that costs too much, not a fault:
 * 503 `too-costly`, so the client may retry with a cheaper request. Other errors are left as they are.
 */
export function fromDatabaseError(err: unknown): FhirError | undefined {
  const e = err as { code?: unknown; driverError?: { code?: unknown } } | undefined;
  if (e?.code !== QUERY_CANCELED && e?.driverError?.code !== QUERY_CANCELED) return undefined;
  return new FhirError(
    503,
    'too-costly',
    'The request took longer than the database statement limit (DB_STATEMENT_TIMEOUT_MS) and was cancelled; narrow the search or try later',
  );
}

/** A database failure as the FHIR error the client gets: 503 while the database is away, 503 too-costly when cancelled. */
export function databaseFailure(err: unknown): FhirError | undefined {
  return isDatabaseUnavailable(err) ? databaseUnavailable() : fromDatabaseError(err);
}
