import type { ThrottlerStorage } from '@nestjs/throttler';
import type { DataSource } from 'typeorm';

type ThrottlerStorageRecord = Awaited<ReturnType<ThrottlerStorage['increment']>>;

/**
 * Buckets per window: a window of `ttl` is counted in buckets of `ttl / 10`, so a sliding window
 * is known to one bucket (10%) without a row per hit.
 */
export const RATE_LIMIT_BUCKETS = 10;

/**
 * How many hits more a sliding window has room for under `limit`, given the hits counted in the
 * last RATE_LIMIT_BUCKETS buckets (`recent`, the current one included) and in one bucket more
 * (`wide`). Two rules: `recent` (at most one window) holds at most `limit`, so a burst gets exactly
 * the limit; `wide` (one window and one bucket, which covers any 60 s however it falls on bucket
 * edges) holds at most `limit + floor(limit / 10)`, so no 60 s ever admits more than 1.1 x the limit
 * (a fixed window let 2 x through across its edge). A client at a steady rate of the limit fits both.
 */
export function slidingWindowRoom(limit: number, recent: number, wide: number): number {
  return Math.max(0, Math.min(limit - recent, limit + Math.floor(limit / RATE_LIMIT_BUCKETS) - wide));
}

interface BucketCounts {
  /** Start of the current bucket (ms, hit clock). */
  bucketStart: number;
  /** Hits in the last RATE_LIMIT_BUCKETS buckets, before this statement's own. */
  recent: number;
  /** Hits in the last RATE_LIMIT_BUCKETS + 1 buckets, before this statement's own. */
  wide: number;
  /** Start of the oldest bucket with hits in the wide range (ms), or the current bucket's. */
  oldestStart: number;
  /** The same in the recent range. */
  oldestRecentStart: number;
  /** The hit clock at the statement (ms). */
  nowMs: number;
}

/**
 * Sliding-window rate-limit counters in PostgreSQL, so every app node behind the load balancer
 * counts against the same limit (the library's default store is per process). A row per key and
 * bucket (`window_start` is the bucket's start; buckets are aligned on the database clock, so
 * nodes with skewed clocks still agree); a key's buckets older than the wide range are deleted as
 * it is counted. Refused hits are not counted, so a client that waits Retry-After gets in.
 */
export class PostgresThrottlerStorage implements ThrottlerStorage {
  /**
   * The instant a hit counts at: the database clock (undefined). Tests pin it, so a burst cannot
   * straddle a bucket edge and Retry-After is exact.
   */
  clock: () => Date | undefined = () => undefined;

  constructor(private readonly db: DataSource) {}

  async increment(key: string, ttl: number, limit: number, _blockDuration: number, throttlerName: string): Promise<ThrottlerStorageRecord> {
    const { granted, counts } = await this.take(key, ttl, 1, limit, throttlerName);
    const isBlocked = granted < 1;
    const timeToExpire = retryAfterSeconds(counts, ttl, limit);
    // A blocked client waits until enough of its window has slid by: Retry-After is when its oldest counted bucket leaves.
    return { totalHits: counts.recent + 1, timeToExpire, isBlocked, timeToBlockExpire: isBlocked ? timeToExpire : 0 };
  }

  /**
   * Takes up to `size` hits at once (a lease) in the current bucket, as many as the sliding window
   * has room for; a refund gives back hits of an earlier lease that were not spent.
   */
  async take(
    key: string,
    ttl: number,
    size: number,
    limit: number,
    throttlerName: string,
    refund?: { bucketStart: number; hits: number },
  ): Promise<{ granted: number; counts: BucketCounts }> {
    const id = `${throttlerName}:${key}`;
    const bucketMs = ttl / RATE_LIMIT_BUCKETS;
    const [row]: { start_ms: number; now_ms: number; current: number; recent: number; wide: number; oldest_ms: number | null; oldest_recent_ms: number | null }[] =
      await this.db.query(
      `WITH hit_at AS (SELECT coalesce($3::timestamptz, clock_timestamp()) AS t),
       b AS (SELECT to_timestamp(floor(extract(epoch FROM hit_at.t) * 1000 / $2) * $2 / 1000.0) AS start, hit_at.t FROM hit_at),
       earlier AS (
         SELECT coalesce(sum(r.hits) FILTER (WHERE r.window_start > b.start - $2 * $5 * interval '1 millisecond'), 0)::int AS recent,
                coalesce(sum(r.hits), 0)::int AS wide,
                min(r.window_start) FILTER (WHERE r.hits > 0) AS oldest,
                min(r.window_start) FILTER (WHERE r.hits > 0 AND r.window_start > b.start - $2 * $5 * interval '1 millisecond') AS oldest_recent
           FROM b JOIN rate_limit_window r
             ON r.key = $1 AND r.window_start < b.start AND r.window_start > b.start - $2 * ($5 + 1) * interval '1 millisecond'
       ),
       expired AS (DELETE FROM rate_limit_window r USING b WHERE r.key = $1 AND r.window_start <= b.start - $2 * ($5 + 1) * interval '1 millisecond'),
       -- Not the current bucket (the upsert below changes that row; one statement must not change a row twice)
       -- nor an expired one (deleted above): there the unspent hits stay counted, which only errs on the safe side.
       refunded AS (
         UPDATE rate_limit_window r SET hits = greatest(0, r.hits - $7) FROM b
          WHERE r.key = $1 AND r.window_start = to_timestamp($6 / 1000.0) AND $7 > 0
            AND r.window_start < b.start AND r.window_start > b.start - $2 * ($5 + 1) * interval '1 millisecond'
       ),
       counted AS (
         INSERT INTO rate_limit_window AS r (key, window_start, hits)
         SELECT $1, b.start, $4 FROM b
         ON CONFLICT (key, window_start) DO UPDATE SET hits = r.hits + EXCLUDED.hits
         RETURNING r.hits
       )
       SELECT (extract(epoch FROM b.start) * 1000)::float8 AS start_ms, (extract(epoch FROM b.t) * 1000)::float8 AS now_ms,
              counted.hits AS current, earlier.recent, earlier.wide, (extract(epoch FROM earlier.oldest) * 1000)::float8 AS oldest_ms,
              (extract(epoch FROM earlier.oldest_recent) * 1000)::float8 AS oldest_recent_ms
         FROM b, earlier, counted`,
      [id, bucketMs, this.clock()?.toISOString() ?? null, size, RATE_LIMIT_BUCKETS, refund?.bucketStart ?? 0, refund?.hits ?? 0],
    );
    // The current bucket's row is locked by the upsert, so its count before ours is exact across nodes.
    const before = row.current - size;
    const counts: BucketCounts = {
      bucketStart: row.start_ms,
      recent: row.recent + before,
      wide: row.wide + before,
      oldestStart: row.oldest_ms ?? row.start_ms,
      oldestRecentStart: row.oldest_recent_ms ?? row.start_ms,
      nowMs: row.now_ms,
    };
    const granted = Math.min(size, slidingWindowRoom(limit, counts.recent, counts.wide));
    if (granted < size) {
      // Hits refused are not counted: give them back (a second round trip only when the budget runs out).
      await this.db.query(`UPDATE rate_limit_window SET hits = greatest(0, hits - $3) WHERE key = $1 AND window_start = to_timestamp($2 / 1000.0)`, [
        id,
        row.start_ms,
        size - granted,
      ]);
    }
    return { granted, counts };
  }

  /** Now on the clock hits count at (this node's clock when not pinned). */
  now(): number {
    return this.clock()?.getTime() ?? Date.now();
  }

  /**
   * Room left for each key under its limit in the sliding window, without counting a hit, and
   * Retry-After for the keys without room.
   */
  async room(keys: string[], limits: number[], ttl: number, throttlerName: string): Promise<{ room: number[]; timeToExpire: number }> {
    const bucketMs = ttl / RATE_LIMIT_BUCKETS;
    const rows: { key: string; recent: number; wide: number; start_ms: number; now_ms: number; oldest_ms: number | null; oldest_recent_ms: number | null }[] =
      await this.db.query(
        `WITH now AS (SELECT coalesce($3::timestamptz, clock_timestamp()) AS t),
         b AS (SELECT to_timestamp(floor(extract(epoch FROM now.t) * 1000 / $2) * $2 / 1000.0) AS start, now.t FROM now)
         SELECT k.key,
                coalesce(sum(r.hits) FILTER (WHERE r.window_start > b.start - $2 * $4 * interval '1 millisecond'), 0)::int AS recent,
                coalesce(sum(r.hits), 0)::int AS wide,
                (extract(epoch FROM b.start) * 1000)::float8 AS start_ms, (extract(epoch FROM b.t) * 1000)::float8 AS now_ms,
                (extract(epoch FROM min(r.window_start) FILTER (WHERE r.hits > 0)) * 1000)::float8 AS oldest_ms,
                (extract(epoch FROM min(r.window_start) FILTER (WHERE r.hits > 0 AND r.window_start > b.start - $2 * $4 * interval '1 millisecond')) * 1000)::float8 AS oldest_recent_ms
           FROM b CROSS JOIN unnest($1::text[]) AS k(key)
           LEFT JOIN rate_limit_window r
             ON r.key = k.key AND r.window_start <= b.start AND r.window_start > b.start - $2 * ($4 + 1) * interval '1 millisecond'
          GROUP BY k.key, b.start, b.t`,
        // The same instant take() counts at, so a pinned clock pins reads of the window too.
        [keys.map((k) => `${throttlerName}:${k}`), bucketMs, this.clock()?.toISOString() ?? null, RATE_LIMIT_BUCKETS],
      );
    const byKey = new Map(rows.map((r) => [r.key, r]));
    let timeToExpire = 1;
    const room = keys.map((k, i) => {
      const r = byKey.get(`${throttlerName}:${k}`)!;
      const counts: BucketCounts = {
        bucketStart: r.start_ms,
        recent: r.recent,
        wide: r.wide,
        oldestStart: r.oldest_ms ?? r.start_ms,
        oldestRecentStart: r.oldest_recent_ms ?? r.start_ms,
        nowMs: r.now_ms,
      };
      const left = slidingWindowRoom(limits[i], r.recent, r.wide);
      if (left < 1) timeToExpire = Math.max(timeToExpire, retryAfterSeconds(counts, ttl, limits[i]));
      return left;
    });
    return { room, timeToExpire };
  }
}

/**
 * Seconds until room may come back: until the oldest counted bucket leaves the range whose rule is
 * full (a bucket counts in `recent` until a window after its start, in `wide` one bucket longer);
 * rounded up, at least 1.
 */
function retryAfterSeconds(counts: BucketCounts, ttl: number, limit: number): number {
  let until = counts.oldestRecentStart + ttl;
  if (limit + Math.floor(limit / RATE_LIMIT_BUCKETS) - counts.wide <= 0) until = Math.max(until, counts.oldestStart + ttl + ttl / RATE_LIMIT_BUCKETS);
  return Math.max(1, Math.ceil((until - counts.nowMs) / 1000));
}

/** Largest lease: one shared-table round trip per this many requests of a busy client. */
const MAX_LEASE = 100;
/** Leases per node stay small against the limit: 1/50 of it, so the tolerance is at most 2% per extra node. */
export function rateLimitLeaseSize(limit: number): number {
  return Math.max(1, Math.min(MAX_LEASE, Math.floor(limit / 50)));
}

interface Lease {
  /** Start and end of the bucket the lease was counted in, on the hit clock (ms). */
  bucketStart: number;
  bucketEnd: number;
  /** Hits of this lease not yet spent. */
  remaining: number;
  /** Hits counted in the sliding window before this lease, plus those spent from it. */
  used: number;
  /** The shared budget ran out with this lease: refuse locally until the bucket ends. */
  exhausted: boolean;
  /** Retry-After of a refusal (s). */
  retryAfter: number;
}

/**
 * The API rate limit without a database round trip per request: each node leases budget from the
 * shared sliding window in batches (rateLimitLeaseSize), counted in the current bucket, and spends
 * it locally until that bucket ends; what it did not spend is given back at its next lease. Every
 * admitted request was counted in the shared table first, so the limits across all nodes are never
 * exceeded (slidingWindowRoom); the tolerance is the other way: budget leased by one node and not
 * yet spent there is not available to the others, so a client spreading its requests over N nodes
 * may be refused up to (N-1) x (lease-1) requests before its limit (at most 2% of it per extra
 * node). A node that saw the budget run out refuses locally until its bucket ends.
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
      if (lease && now < lease.bucketEnd) {
        if (lease.remaining > 0) {
          lease.remaining--;
          lease.used++;
          return { totalHits: lease.used, timeToExpire: lease.retryAfter, isBlocked: false, timeToBlockExpire: 0 };
        }
        if (lease.exhausted) return { totalHits: limit + 1, timeToExpire: lease.retryAfter, isBlocked: true, timeToBlockExpire: lease.retryAfter };
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
    const old = this.leases.get(id);
    // What an earlier lease did not spend goes back to its bucket (never admitted, so not counted).
    const refund = old && old.remaining > 0 ? { bucketStart: old.bucketStart, hits: old.remaining } : undefined;
    if (old) old.remaining = 0;
    const { granted, counts } = await this.shared.take(key, ttl, size, limit, throttlerName, refund);
    if (this.leases.size >= 10_000) {
      for (const [k, l] of this.leases) if (l.bucketEnd <= now) this.leases.delete(k);
    }
    const bucketMs = ttl / RATE_LIMIT_BUCKETS;
    this.leases.set(id, {
      bucketStart: counts.bucketStart,
      // On this node's clock: the bucket's end as far from now as the database saw it.
      bucketEnd: now + (counts.bucketStart + bucketMs - counts.nowMs),
      remaining: granted,
      used: counts.recent,
      exhausted: granted < size,
      retryAfter: retryAfterSeconds(counts, ttl, limit),
    });
  }
}
