import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Records of one person (docs/consent.md, Linked records): `patient_link_assertion` holds who says
 * which two Patient records are the same person (source `Patient/{id}` for its `Patient.link`; the
 * identity module's Person links and $match will add sources of their own), stored in both
 * directions; `patient_link` is their closure: for every Patient record, every other record of its
 * linked set. The consent predicate reads the closure, so a patient's denial follows the person.
 * Both are maintained in the transaction of each Patient write; existing Patients are backfilled.
 */
export class PatientLinks1732402000000 implements MigrationInterface {
  name = 'PatientLinks1732402000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE patient_link_assertion (
        source     text NOT NULL,
        patient_id text NOT NULL,
        linked_id  text NOT NULL,
        PRIMARY KEY (patient_id, linked_id, source)
      )`);
    // A source's assertions are replaced as a whole when it is written.
    await q.query(`CREATE INDEX patient_link_assertion_source_idx ON patient_link_assertion (source)`);
    await q.query(`
      CREATE TABLE patient_link (
        patient_id text NOT NULL,
        linked_id  text NOT NULL,
        PRIMARY KEY (patient_id, linked_id)
      )`);
    // Backfill from the stored Patients (every link type means the same person in R4).
    await q.query(`
      WITH direct AS (
        SELECT 'Patient/' || r.id AS source, r.id AS patient_id, substring(l->'other'->>'reference' from '^Patient/([A-Za-z0-9\\-.]{1,64})$') AS linked_id
          FROM resource r, jsonb_array_elements(CASE WHEN jsonb_typeof(r.content->'link') = 'array' THEN r.content->'link' ELSE '[]'::jsonb END) l
         WHERE r.resource_type = 'Patient' AND NOT r.deleted
      )
      INSERT INTO patient_link_assertion (source, patient_id, linked_id)
      SELECT source, patient_id, linked_id FROM direct WHERE linked_id IS NOT NULL AND linked_id <> patient_id
      UNION
      SELECT source, linked_id, patient_id FROM direct WHERE linked_id IS NOT NULL AND linked_id <> patient_id`);
    await q.query(`
      WITH RECURSIVE reach(origin, node) AS (
        SELECT DISTINCT patient_id, patient_id FROM patient_link_assertion
        UNION
        SELECT r.origin, a.linked_id FROM reach r JOIN patient_link_assertion a ON a.patient_id = r.node
      )
      INSERT INTO patient_link (patient_id, linked_id) SELECT origin, node FROM reach WHERE origin <> node`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE patient_link`);
    await q.query(`DROP TABLE patient_link_assertion`);
  }
}
