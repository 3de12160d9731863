import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Rate limits as sliding windows (issue 22, item 15): a row per key and bucket of a tenth of the
 * window instead of one fixed window per key, so the key alone is no longer unique. Existing rows
 * (one current window each) stay as they are: each reads as one bucket at its window's start.
 */
export class RateLimitSlidingWindow1732402260000 implements MigrationInterface {
  name = 'RateLimitSlidingWindow1732402260000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE rate_limit_window DROP CONSTRAINT rate_limit_window_pkey, ADD PRIMARY KEY (key, window_start)`);
  }

  async down(q: QueryRunner): Promise<void> {
    // Keeps each key's newest bucket: the fixed window loses the older ones anyway.
    await q.query(`DELETE FROM rate_limit_window r USING rate_limit_window n WHERE n.key = r.key AND n.window_start > r.window_start`);
    await q.query(`ALTER TABLE rate_limit_window DROP CONSTRAINT rate_limit_window_pkey, ADD PRIMARY KEY (key)`);
  }
}
