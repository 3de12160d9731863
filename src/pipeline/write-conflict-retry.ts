import { setTimeout as sleep } from 'node:timers/promises';
import { FhirError } from '../common/fhir-error';

/** SQLSTATEs of a transaction PostgreSQL rolled back for a concurrent one: serialization_failure, deadlock_detected. */
const WRITE_CONFLICT_CODES = new Set(['40001', '40P01']);

/** True when PostgreSQL rolled the transaction back because of a concurrent one (nothing of it was stored). */
export function isWriteConflict(err: unknown): boolean {
  const e = err as { code?: unknown; driverError?: { code?: unknown } } | undefined;
  return WRITE_CONFLICT_CODES.has(String(e?.code)) || WRITE_CONFLICT_CODES.has(String(e?.driverError?.code));
}

/**
 * Runs a whole write interaction (its session, its audit records) again when PostgreSQL rolled it
 * back for a deadlock or a serialization failure, at most `retries` more times, after a short
 * random pause so the rerun does not meet its rival again at once. When the last run conflicts too,
 * the client gets 503 `transient` and may send the request again; nothing of it was stored.
 */
export async function retryWriteConflicts<T>(retries: number, work: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await work();
    } catch (err) {
      if (!isWriteConflict(err)) throw err;
      if (attempt >= retries) {
        throw new FhirError(
          503,
          'transient',
          `The interaction met concurrent writes and was rolled back ${attempt + 1} time(s); nothing was stored. Send it again`,
          undefined,
          { 'Retry-After': '1' },
        );
      }
      await sleep(Math.random() * 20 * 2 ** attempt);
    }
  }
}
