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
    // A de-identified export's pseudonyms: random per export and reference (never derived from the
    // data, 45 CFR 164.514(c)), here only so a resumed job keeps them consistent; deleted when the
    // export ends (completed, failed or cancelled), so no key back to the records outlives it.
    await q.query(`
      CREATE TABLE bulk_export_pseudonym (
        export_id uuid NOT NULL REFERENCES bulk_export (id) ON DELETE CASCADE,
        reference text NOT NULL,
        pseudonym uuid NOT NULL,
        PRIMARY KEY (export_id, reference)
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE bulk_export_pseudonym');
    await q.query('DROP TABLE bulk_export');
  }
}
