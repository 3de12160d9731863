import type { ThrottlerStorage } from '@nestjs/throttler';
import type { DataSource } from 'typeorm';

type ThrottlerStorageRecord = Awaited<ReturnType<ThrottlerStorage['increment']>>;

/**
 * Fixed-window rate-limit counters in PostgreSQL, so every app node behind the load balancer
 * counts against the same limit (the library's default store is per process). One upsert per
 * request; windows are aligned on the database clock, so nodes with skewed clocks still agree.
 */
export class PostgresThrottlerStorage implements ThrottlerStorage {
  /**
   * The instant a hit counts at: the database clock (undefined). Tests pin it, so a burst cannot
   * straddle a window boundary and Retry-After is exact.
   */
  clock: () => Date | undefined = () => undefined;

  constructor(private readonly db: DataSource) {}

  async increment(key: string, ttl: number, limit: number, _blockDuration: number, throttlerName: string): Promise<ThrottlerStorageRecord> {
    const [row]: { hits: number; expires_ms: number }[] = await this.db.query(
      `WITH hit_at AS (SELECT coalesce($3::timestamptz, clock_timestamp()) AS t),
       w AS (
         SELECT to_timestamp(floor(extract(epoch FROM hit_at.t) * 1000 / $2) * $2 / 1000.0) AS start FROM hit_at
       )
       INSERT INTO rate_limit_window AS r (key, window_start, hits)
       SELECT $1, w.start, 1 FROM w
       ON CONFLICT (key) DO UPDATE
         SET hits = CASE WHEN r.window_start = EXCLUDED.window_start THEN r.hits + 1 ELSE 1 END,
             window_start = EXCLUDED.window_start
       RETURNING hits, (extract(epoch FROM window_start) * 1000 + $2 - extract(epoch FROM (SELECT t FROM hit_at)) * 1000)::float8 AS expires_ms`,
      [`${throttlerName}:${key}`, ttl, this.clock()?.toISOString() ?? null],
    );
    const timeToExpire = Math.max(1, Math.ceil(row.expires_ms / 1000));
    const isBlocked = row.hits > limit;
    // A blocked client waits for the window to end: Retry-After is the rest of the window.
    return { totalHits: row.hits, timeToExpire, isBlocked, timeToBlockExpire: isBlocked ? timeToExpire : 0 };
  }

  /** Hits of these keys in the current window (missing or older windows: 0), without counting a hit. */
  async hits(keys: string[], ttl: number, throttlerName: string): Promise<{ hits: number[]; timeToExpire: number }> {
    const rows: { key: string; hits: number; expires_ms: number }[] = await this.db.query(
      `WITH now AS (SELECT coalesce($3::timestamptz, clock_timestamp()) AS t),
       w AS (
         SELECT to_timestamp(floor(extract(epoch FROM now.t) * 1000 / $2) * $2 / 1000.0) AS start FROM now
       )
       SELECT k.key, coalesce(r.hits, 0) AS hits,
              (extract(epoch FROM w.start) * 1000 + $2 - extract(epoch FROM now.t) * 1000)::float8 AS expires_ms
         FROM now CROSS JOIN w CROSS JOIN unnest($1::text[]) AS k(key)
         LEFT JOIN rate_limit_window r ON r.key = k.key AND r.window_start = w.start`,
      // The same instant increment() counts at, so a pinned clock pins reads of the window too.
      [keys.map((k) => `${throttlerName}:${k}`), ttl, this.clock()?.toISOString() ?? null],
    );
    const byKey = new Map(rows.map((r) => [r.key, r.hits]));
    return {
      hits: keys.map((k) => byKey.get(`${throttlerName}:${k}`) ?? 0),
      timeToExpire: Math.max(1, Math.ceil((rows[0]?.expires_ms ?? ttl) / 1000)),
    };
  }
}
