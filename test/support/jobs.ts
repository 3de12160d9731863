import type { DataSource } from 'typeorm';

/** Waits until every job of `queue` committed so far is done; a failed one fails the test. Polls every 100 ms. */
export async function jobsSettled(db: DataSource, queue: string, maxPolls = 300): Promise<void> {
  for (let i = 0; i < maxPolls; i++) {
    const [{ open, failed }] = await db.query(
      `SELECT count(*) FILTER (WHERE state NOT IN ('completed', 'failed', 'cancelled'))::int AS open, count(*) FILTER (WHERE state = 'failed')::int AS failed FROM pgboss.job WHERE name = $1`,
      [queue],
    );
    if (failed) throw new Error(`${failed} job(s) of ${queue} failed`);
    if (!open) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`jobs of ${queue} did not finish`);
}

/** Waits until no rest-hook notification is left in the outbox table (all delivered, dropped or given up). Polls every 100 ms. */
export async function notificationsSettled(db: DataSource, maxPolls = 300): Promise<void> {
  for (let i = 0; i < maxPolls; i++) {
    const [{ n }] = await db.query(`SELECT count(*)::int AS n FROM subscription_notification`);
    if (!n) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('rest-hook notifications were not delivered');
}

/**
 * Waits until every pending rest-hook match committed so far (`subscription_match_pending`) is
 * judged; one given up after its retries fails the test, as a failed job does. Polls every 100 ms.
 */
export async function subscriptionMatchesSettled(db: DataSource, maxPolls = 300): Promise<void> {
  for (let i = 0; i < maxPolls; i++) {
    const [{ open, givenUp }] = await db.query(
      `SELECT count(*) FILTER (WHERE next_attempt_at <> 'infinity')::int AS open, count(*) FILTER (WHERE next_attempt_at = 'infinity')::int AS "givenUp" FROM subscription_match_pending`,
    );
    if (givenUp) throw new Error(`${givenUp} pending subscription match(es) given up`);
    if (!open) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('pending subscription matches were not judged');
}

/** Waits until every pending rest-hook match is judged, then every notification they made is delivered (or dropped, given up). */
export async function subscriptionsSettled(db: DataSource, maxPolls = 300): Promise<void> {
  await subscriptionMatchesSettled(db, maxPolls);
  await notificationsSettled(db, maxPolls);
}
