import { createHash } from 'node:crypto';
import { QueryFailedError, type EntityManager } from 'typeorm';

interface PgClient {
  query(config: { name: string; text: string; values: unknown[] }): Promise<{ rows: unknown[] }>;
}

/**
 * At most this many readers' predicates in one statement judging several readers at once
 * (`readableVersions`, `readCurrentForReaders`): its plan holds every reader's subplans, so a batch
 * with more readers (hundreds of Subscriptions matching one write) runs as several statements.
 */
export const READERS_PER_STATEMENT = 32;

/** Statement names by SQL text: the few texts of the by-key statements (one per access-predicate shape). */
const names = new Map<string, string>();
const MAX_NAMES = 200;

/**
 * A statement by primary key as a named prepared statement of the session's connection
 * (docs/performance.md, "Where the parent's CPU went"): the consent predicate makes planning cost
 * ~0.8 ms against ~0.05 ms of execution, and an unnamed statement is planned on every call. Named,
 * PostgreSQL's plan cache keeps a generic plan once it costs no more than the custom ones (a key
 * lookup always does), so the same read by id is planned a few times per connection instead of
 * every time. Use only where the plan cannot depend on the values: a lookup by key.
 */
export async function queryByKey<T>(tx: EntityManager, text: string, values: unknown[]): Promise<T[]> {
  const client = (tx.queryRunner as { databaseConnection?: PgClient } | undefined)?.databaseConnection;
  if (!client) return tx.query(text, values);
  let name = names.get(text);
  if (!name) {
    // Each name is a statement kept by every connection that ran it: past the bound (a renderer
    // that put a value into the text instead of binding it), a new text runs unnamed.
    if (names.size >= MAX_NAMES) return tx.query(text, values);
    name = `by_key_${createHash('sha256').update(text).digest('base64url').slice(0, 32)}`;
    names.set(text, name);
  }
  try {
    return (await client.query({ name, text, values })).rows as T[];
  } catch (err) {
    // As TypeORM reports it, so statement-timeout, conflict and outage handling see the same error.
    throw new QueryFailedError(text, values, err as Error);
  }
}
