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

  /**
   * Counts `size` hits at once (a lease) in the current window; answers the hits counted before
   * them and the milliseconds left in the window.
   */
  async take(key: string, ttl: number, size: number, throttlerName: string): Promise<{ before: number; expiresMs: number }> {
    const [row]: { hits: number; expires_ms: number }[] = await this.db.query(
      `WITH hit_at AS (SELECT coalesce($3::timestamptz, clock_timestamp()) AS t),
       w AS (
         SELECT to_timestamp(floor(extract(epoch FROM hit_at.t) * 1000 / $2) * $2 / 1000.0) AS start FROM hit_at
       )
       INSERT INTO rate_limit_window AS r (key, window_start, hits)
       SELECT $1, w.start, $4 FROM w
       ON CONFLICT (key) DO UPDATE
         SET hits = CASE WHEN r.window_start = EXCLUDED.window_start THEN r.hits + $4 ELSE $4 END,
             window_start = EXCLUDED.window_start
       RETURNING hits, (extract(epoch FROM window_start) * 1000 + $2 - extract(epoch FROM (SELECT t FROM hit_at)) * 1000)::float8 AS expires_ms`,
      [`${throttlerName}:${key}`, ttl, this.clock()?.toISOString() ?? null, size],
    );
    return { before: row.hits - size, expiresMs: row.expires_ms };
  }

  /** Now on the clock hits count at (this node's clock when not pinned). */
  now(): number {
    return this.clock()?.getTime() ?? Date.now();
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

/** Largest lease: one shared-table round trip per this many requests of a busy client. */
const MAX_LEASE = 100;
/** Leases per node stay small against the limit: 1/50 of it, so the tolerance is at most 2% per extra node. */
export function rateLimitLeaseSize(limit: number): number {
  return Math.max(1, Math.min(MAX_LEASE, Math.floor(limit / 50)));
}

interface Lease {
  /** End of the window, on the hit clock (ms). */
  windowEnd: number;
  /** Hits of this lease not yet spent. */
  remaining: number;
  /** Hits counted in the shared window before this lease, plus those spent from it. */
  used: number;
  /** The shared budget ran out with this lease: refuse locally until the window ends. */
  exhausted: boolean;
}

/**
 * The API rate limit without a database round trip per request: each node leases budget from the
 * shared window in batches (rateLimitLeaseSize) and spends it locally. Every admitted request was
 * counted in the shared table first, so the limit across all nodes is never exceeded; the
 * tolerance is the other way: budget leased by one node and not spent there is lost to the others,
 * so a client spreading its requests over N nodes may be refused up to (N-1) x (lease-1) requests
 * before its limit (at most 2% of it per extra node). A node that saw the budget run out refuses
 * locally until the window ends.
 */
export class LeasedThrottlerStorage implements ThrottlerStorage {
  private readonly leases = new Map<string, Lease>();
  private readonly refills = new Map<string, Promise<void>>();

  constructor(readonly shared: PostgresThrottlerStorage) {}

  async increment(key: string, ttl: number, limit: number, _blockDuration: number, throttlerName: string): Promise<ThrottlerStorageRecord> {
    const id = `${throttlerName}:${key}`;
    for (;;) {
      const now = this.shared.now();
      const lease = this.leases.get(id);
      if (lease && now < lease.windowEnd) {
        const timeToExpire = Math.max(1, Math.ceil((lease.windowEnd - now) / 1000));
        if (lease.remaining > 0) {
          lease.remaining--;
          lease.used++;
          return { totalHits: lease.used, timeToExpire, isBlocked: false, timeToBlockExpire: 0 };
        }
        if (lease.exhausted) return { totalHits: limit + 1, timeToExpire, isBlocked: true, timeToBlockExpire: timeToExpire };
      }
      // One refill per key at a time; concurrent requests wait for it and spend from it.
      const pending = this.refills.get(id);
      if (pending) {
        await pending;
        continue;
      }
      const refill = this.refill(id, key, ttl, limit, throttlerName, now).finally(() => this.refills.delete(id));
      this.refills.set(id, refill);
      await refill;
    }
  }

  private async refill(id: string, key: string, ttl: number, limit: number, throttlerName: string, now: number): Promise<void> {
    const size = rateLimitLeaseSize(limit);
    const { before, expiresMs } = await this.shared.take(key, ttl, size, throttlerName);
    const granted = Math.max(0, Math.min(size, limit - before));
    if (this.leases.size >= 10_000) {
      for (const [k, l] of this.leases) if (l.windowEnd <= now) this.leases.delete(k);
    }
    this.leases.set(id, { windowEnd: now + expiresMs, remaining: granted, used: before, exhausted: granted < size });
  }
}
