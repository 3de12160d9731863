import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Rate-limit windows shared by every app node (one row per client or IP and throttler). UNLOGGED:
 * counters need no crash safety or replication, and skipping WAL keeps the per-request upsert cheap.
 */
export class RateLimit1732400000700 implements MigrationInterface {
  name = 'RateLimit1732400000700';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE UNLOGGED TABLE rate_limit_window (
        key          text        PRIMARY KEY,
        window_start timestamptz NOT NULL,
        hits         integer     NOT NULL
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE rate_limit_window`);
  }
}
