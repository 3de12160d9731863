import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Bulk Data `$export` (issue 26, docs/public-health.md): one row per export request — who asked
 * (the stored principal the job re-creates its AccessContext from), what was asked, where the
 * job stands, and the NDJSON files written so far (type, file name, count, bytes), so a job
 * that restarts skips the types already written and the status endpoint answers from here.
 */
export class BulkExport1732402400000 implements MigrationInterface {
  name = 'BulkExport1732402400000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE bulk_export (
        id uuid PRIMARY KEY,
        client_id text NOT NULL,
        principal jsonb NOT NULL,
        request text NOT NULL,
        params jsonb NOT NULL,
        status text NOT NULL CHECK (status IN ('accepted', 'in-progress', 'completed', 'failed', 'cancelled', 'expired')),
        progress text,
        transaction_time timestamptz NOT NULL,
        error text,
        output jsonb NOT NULL DEFAULT '[]',
        bytes bigint NOT NULL DEFAULT 0,
        created_at timestamptz NOT NULL DEFAULT now(),
        completed_at timestamptz,
        expires_at timestamptz
      )`);
    // Concurrent exports per client, and the disk quota over the exports whose files exist.
    await q.query(`CREATE INDEX bulk_export_client_status ON bulk_export (client_id, status)`);
    await q.query(`CREATE INDEX bulk_export_status ON bulk_export (status)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE bulk_export');
  }
}
