import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Reportable-condition case reports (docs/public-health.md, Case reports): one row per report, i.e.
 * per patient × condition code × episode. `first_seen`/`last_seen` span the clinical dates of the
 * qualifying resources seen for the episode; a resource within `episodeGapDays` of that span joins
 * it, anything further starts a new episode (a new report). The report jobs decide under an
 * advisory lock per patient and code, so two jobs (or a redelivered one) never both report.
 * `reporting_org` is also what lets the reporting organization read the report Bundle (the
 * per-type rule for Bundle reads this table by `id`, the Bundle's id).
 */
export class CaseReport1732402400260 implements MigrationInterface {
  name = 'CaseReport1732402400260';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE case_report (
        id            text PRIMARY KEY,
        task_id       text NOT NULL,
        patient_id    text NOT NULL,
        code_system   text NOT NULL,
        code          text NOT NULL,
        first_seen    timestamptz NOT NULL,
        last_seen     timestamptz NOT NULL,
        reporting_org text,
        trigger_ref   text NOT NULL,
        basis         text NOT NULL,
        created_at    timestamptz NOT NULL DEFAULT now(),
        CHECK (first_seen <= last_seen)
      )`);
    await q.query(`CREATE INDEX case_report_episode_idx ON case_report (patient_id, code_system, code, last_seen)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE case_report`);
  }
}
