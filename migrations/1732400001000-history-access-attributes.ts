import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Per-version access (GUIDE §1): each history row carries its own version's Patient compartments
 * and security labels (author_org it already had), so vread and history are judged on the version
 * asked for, not on the current row.
 *
 * Backfill: security labels are computed from each version's own `meta.security`; compartments of
 * earlier versions are not computable in SQL (FHIRPath), so every version takes the current row's
 * compartments — exact for current versions, and for older ones unless a later version moved the
 * resource to another patient. Deletion versions keep the attributes of the version they delete.
 */
export class HistoryAccessAttributes1732400001000 implements MigrationInterface {
  name = 'HistoryAccessAttributes1732400001000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE resource_history
      ADD COLUMN compartments text[] NOT NULL DEFAULT '{}',
      ADD COLUMN security_labels text[] NOT NULL DEFAULT '{}'`);
    await q.query(`
      UPDATE resource_history h SET
        compartments = r.compartments,
        security_labels = CASE WHEN h.content IS NULL THEN r.security_labels ELSE COALESCE(ARRAY(
          SELECT coalesce(s->>'system', '') || '|' || coalesce(s->>'code', '')
            FROM jsonb_array_elements(CASE WHEN jsonb_typeof(h.content->'meta'->'security') = 'array' THEN h.content->'meta'->'security' ELSE '[]'::jsonb END) s
           ORDER BY 1), '{}') END
      FROM resource r
      WHERE r.resource_type = h.resource_type AND r.id = h.id`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE resource_history DROP COLUMN compartments, DROP COLUMN security_labels`);
  }
}
