import type { MigrationInterface, QueryRunner } from 'typeorm';
import { FHIR_DATE_RANGE_SQL, FHIR_PERIOD_RANGE_SQL } from './1732402320000-clinical-period';

/**
 * The date helpers of the generated `clinical_period` (1732402320000), same values, about 5x less
 * PostgreSQL CPU per stored version (docs/performance.md "Ingest CPU back to the parent"). Every
 * write computes the column twice (`resource` and `resource_history`); in a bulk INSERT of
 * Synthea data it cost ~35 µs a row, most of it in `fhir_period_range`: an SQL function with a
 * FROM clause cannot be inlined, so each call ran through the SQL-function executor (~150 µs for
 * an Encounter or a Claim). As plpgsql both helpers are cached expressions; `fhir_date_range` tests
 * the one pattern its length allows (a `\d{4}` year is 4 characters, a month 7, a date 10) instead
 * of up to four regular expressions, and casts a dateTime once.
 *
 * Same results for every input, NULL included (the stored values do not change, so nothing is
 * rewritten): the precision's range, NULL for a value that is not a valid FHIR date.
 */
export class ClinicalPeriodDateHelpersPlpgsql1732402400340 implements MigrationInterface {
  name = 'ClinicalPeriodDateHelpersPlpgsql1732402400340';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE OR REPLACE FUNCTION fhir_date_range(v text) RETURNS tstzrange LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
      DECLARE t timestamptz;
      BEGIN
        -- No EXCEPTION block (a subtransaction per call): pg_input_is_valid refuses 2019-02-30.
        CASE length(v)
          WHEN 4 THEN
            IF v ~ '^\\d{4}$' AND pg_input_is_valid(v || '-01-01', 'timestamp') THEN
              RETURN tstzrange((v || '-01-01')::timestamp AT TIME ZONE 'UTC', ((v || '-01-01')::timestamp + interval '1 year') AT TIME ZONE 'UTC', '[)');
            END IF;
          WHEN 7 THEN
            IF v ~ '^\\d{4}-\\d{2}$' AND pg_input_is_valid(v || '-01', 'timestamp') THEN
              RETURN tstzrange((v || '-01')::timestamp AT TIME ZONE 'UTC', ((v || '-01')::timestamp + interval '1 month') AT TIME ZONE 'UTC', '[)');
            END IF;
          WHEN 10 THEN
            IF v ~ '^\\d{4}-\\d{2}-\\d{2}$' AND pg_input_is_valid(v, 'timestamp') THEN
              RETURN tstzrange(v::timestamp AT TIME ZONE 'UTC', (v::timestamp + interval '1 day') AT TIME ZONE 'UTC', '[)');
            END IF;
          ELSE
            -- NULL lands here too: the match is NULL, so is the answer.
            IF v ~ '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}(:\\d{2}(\\.\\d+)?)?(Z|[+-]\\d{2}:\\d{2})$' AND pg_input_is_valid(v, 'timestamptz') THEN
              t := v::timestamptz;
              RETURN tstzrange(t, t, '[]');
            END IF;
        END CASE;
        RETURN NULL;
      END
      $$`);
    await q.query(`
      CREATE OR REPLACE FUNCTION fhir_period_range(p jsonb) RETURNS tstzrange LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
      DECLARE s tstzrange; e tstzrange;
      BEGIN
        -- Most calls are for an absent Period (the COALESCE chains of the mapping).
        IF p IS NULL THEN RETURN NULL; END IF;
        s := fhir_date_range(p->>'start');
        e := fhir_date_range(p->>'end');
        IF s IS NULL AND e IS NULL THEN RETURN NULL; END IF;
        IF COALESCE(lower(s), '-infinity') > COALESCE(upper(e), 'infinity') THEN RETURN NULL; END IF;
        RETURN tstzrange(COALESCE(lower(s), '-infinity'), COALESCE(upper(e), 'infinity'), CASE WHEN upper_inc(e) THEN '[]' ELSE '[)' END);
      END
      $$`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`CREATE OR REPLACE FUNCTION fhir_date_range(v text) RETURNS tstzrange LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$${FHIR_DATE_RANGE_SQL}$$`);
    await q.query(`CREATE OR REPLACE FUNCTION fhir_period_range(p jsonb) RETURNS tstzrange LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$${FHIR_PERIOD_RANGE_SQL}$$`);
  }
}
