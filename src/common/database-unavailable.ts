import { FhirError } from './fhir-error';

/** Seconds a client is asked to wait (Retry-After) while the database is away. */
export const DATABASE_RETRY_AFTER_SECONDS = 5;

// Socket-level failures reaching the server (node error codes).
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);
// SQLSTATEs of a server that is away or going away: class 08 (connection exception), shutdown, starting up, full.
const TRANSIENT_SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300']);
// node-postgres reports a lost or unobtainable connection with plain Errors.
const DRIVER_MESSAGES = /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Client was closed and is not queryable|Connection is not established/;

/**
 * True when `err` means "the database cannot be reached right now" (refused, reset, shut down,
 * starting up), as opposed to a failing statement. Looks through TypeORM's `driverError`, `cause`
 * and AggregateError's `errors`.
 */
export function isDatabaseUnavailable(err: unknown, depth = 0): boolean {
  if (!err || typeof err !== 'object' || depth > 4) return false;
  const e = err as { code?: unknown; message?: unknown; driverError?: unknown; cause?: unknown; errors?: unknown };
  if (typeof e.code === 'string' && (NETWORK_CODES.has(e.code) || TRANSIENT_SQLSTATES.has(e.code) || /^08[0-9A-Z]{3}$/.test(e.code))) return true;
  if (typeof e.message === 'string' && DRIVER_MESSAGES.test(e.message)) return true;
  const nested = [e.driverError, e.cause, ...(Array.isArray(e.errors) ? e.errors : [])];
  return nested.some((n) => n !== err && isDatabaseUnavailable(n, depth + 1));
}

/** The answer while the database is away: 503 `transient` with Retry-After, never 401 or 500. */
export function databaseUnavailable(): FhirError {
  return FhirError.unavailable('The database is unreachable; retry later', DATABASE_RETRY_AFTER_SECONDS);
}
