import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Identity matching's own index (docs/identity.md): one row per stored Patient with its normalized
 * demographics (src/identity/demographics.ts) and the blocking keys candidates are found by in SQL:
 * birth date, identifiers (`system|value`), Double Metaphone codes of family and given names
 * (`fuzzystrmatch`, shipped with PostgreSQL and the embedded binaries). Kept by the identity
 * module's pre-commit write listener in each Patient write's transaction. Patients stored before
 * this migration are not backfilled here (normalization lives in TypeScript): they enter the
 * index on their next write (a backfill job is listed as open in docs/identity.md).
 */
export class PatientDemographics1732402400050 implements MigrationInterface {
  name = 'PatientDemographics1732402400050';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE EXTENSION IF NOT EXISTS fuzzystrmatch`);
    await q.query(`
      CREATE TABLE patient_demographics (
        patient_id    text PRIMARY KEY,
        custodian_org text,
        family        text[] NOT NULL,
        given         text[] NOT NULL,
        birth_date    text,
        sex           text,
        postal_codes  text[] NOT NULL,
        streets       text[] NOT NULL,
        phones        text[] NOT NULL,
        emails        text[] NOT NULL,
        identifiers   text[] NOT NULL,
        family_codes  text[] NOT NULL,
        given_codes   text[] NOT NULL
      )`);
    // Blocking keys: each candidate query is a union of index probes on these.
    await q.query(`CREATE INDEX patient_demographics_birth_date_idx ON patient_demographics (birth_date)`);
    await q.query(`CREATE INDEX patient_demographics_identifiers_idx ON patient_demographics USING gin (identifiers)`);
    await q.query(`CREATE INDEX patient_demographics_family_codes_idx ON patient_demographics USING gin (family_codes)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE patient_demographics`);
  }
}
