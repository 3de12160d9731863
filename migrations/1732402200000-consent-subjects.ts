import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * `consent_subject`: every Patient record whose rows the consent predicate must probe — one with a
 * provision of its own (`consent_provision`) or with linked records (`patient_link`, whose denials
 * follow the person). For every other patient the base policy decides without the two probes
 * (docs/consent.md, "Patients without provisions"): at 1M resources those probes were most of the
 * predicate's cost on row-heavy queries.
 *
 * Kept by triggers on both tables, in the transaction that writes the provision or the link, so
 * every writer (materializers, the identity module later) keeps it and it is visible exactly when
 * they are. It only grows: a patient whose last Consent is withdrawn stays a subject (probed, and
 * decided by the base policy as before). An extra subject costs a probe; a missing one would ignore
 * a denial, and a set that never shrinks has no delete to race with a concurrent insert.
 */
export class ConsentSubjects1732402200000 implements MigrationInterface {
  name = 'ConsentSubjects1732402200000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE consent_subject (patient_id text PRIMARY KEY)`);
    await q.query(`
      CREATE FUNCTION consent_subject_add() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        INSERT INTO consent_subject (patient_id) SELECT DISTINCT patient_id FROM added ON CONFLICT DO NOTHING;
        RETURN NULL;
      END $$`);
    for (const table of ['consent_provision', 'patient_link']) {
      for (const event of ['INSERT', 'UPDATE']) {
        await q.query(
          `CREATE TRIGGER ${table}_subject_${event.toLowerCase()} AFTER ${event} ON ${table}
             REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION consent_subject_add()`,
        );
      }
    }
    await q.query(`
      INSERT INTO consent_subject (patient_id)
      SELECT patient_id FROM consent_provision UNION SELECT patient_id FROM patient_link`);
  }

  async down(q: QueryRunner): Promise<void> {
    for (const table of ['consent_provision', 'patient_link']) {
      for (const event of ['insert', 'update']) await q.query(`DROP TRIGGER ${table}_subject_${event} ON ${table}`);
    }
    await q.query(`DROP FUNCTION consent_subject_add()`);
    await q.query(`DROP TABLE consent_subject`);
  }
}
