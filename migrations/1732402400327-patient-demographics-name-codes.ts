import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The name blocking key as one composite (docs/identity.md, issue 27 at 1M Patients): `name_codes`
 * holds `family code:given code` for every pair of a row's Double Metaphone codes, so "shares a
 * family code AND a given code" is one GIN probe (`name_codes && …`) instead of a probe on the family
 * code (thousands of rows for a common surname at 1M: Double Metaphone keeps 4 characters) filtered
 * by the given codes. Same candidates, by construction. Existing rows are filled from their codes.
 */
export class PatientDemographicsNameCodes1732402400327 implements MigrationInterface {
  name = 'PatientDemographicsNameCodes1732402400327';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE patient_demographics ADD COLUMN name_codes text[] NOT NULL DEFAULT '{}'`);
    await q.query(`UPDATE patient_demographics SET name_codes = ARRAY(SELECT f || ':' || g FROM unnest(family_codes) f, unnest(given_codes) g)`);
    await q.query(`ALTER TABLE patient_demographics ALTER COLUMN name_codes DROP DEFAULT`);
    await q.query(`CREATE INDEX patient_demographics_name_codes_idx ON patient_demographics USING gin (name_codes)`);
    // The family-code probe it replaces (the only reader of that index).
    await q.query(`DROP INDEX patient_demographics_family_codes_idx`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`CREATE INDEX patient_demographics_family_codes_idx ON patient_demographics USING gin (family_codes)`);
    await q.query(`DROP INDEX patient_demographics_name_codes_idx`);
    await q.query(`ALTER TABLE patient_demographics DROP COLUMN name_codes`);
  }
}
