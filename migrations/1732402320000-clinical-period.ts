import type { MigrationInterface, QueryRunner } from 'typeorm';

/** The first (SQL) bodies of the date helpers; 1732402400340 replaces them with plpgsql and gives them back on down. */
export const FHIR_DATE_RANGE_SQL = `
        -- No EXCEPTION block (a subtransaction per call, on every write): an impossible date such as
        -- 2019-02-30 is caught by pg_input_is_valid and gives no clinical date.
        SELECT CASE
          WHEN v ~ '^\\d{4}$' AND pg_input_is_valid(v || '-01-01', 'timestamp')
            THEN tstzrange((v || '-01-01')::timestamp AT TIME ZONE 'UTC', ((v || '-01-01')::timestamp + interval '1 year') AT TIME ZONE 'UTC', '[)')
          WHEN v ~ '^\\d{4}-\\d{2}$' AND pg_input_is_valid(v || '-01', 'timestamp')
            THEN tstzrange((v || '-01')::timestamp AT TIME ZONE 'UTC', ((v || '-01')::timestamp + interval '1 month') AT TIME ZONE 'UTC', '[)')
          WHEN v ~ '^\\d{4}-\\d{2}-\\d{2}$' AND pg_input_is_valid(v, 'timestamp')
            THEN tstzrange(v::timestamp AT TIME ZONE 'UTC', (v::timestamp + interval '1 day') AT TIME ZONE 'UTC', '[)')
          WHEN v ~ '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}(:\\d{2}(\\.\\d+)?)?(Z|[+-]\\d{2}:\\d{2})$' AND pg_input_is_valid(v, 'timestamptz')
            THEN tstzrange(v::timestamptz, v::timestamptz, '[]')
        END
      `;
export const FHIR_PERIOD_RANGE_SQL = `
        SELECT CASE WHEN s IS NULL AND e IS NULL THEN NULL
                    WHEN COALESCE(lower(s), '-infinity') > COALESCE(upper(e), 'infinity') THEN NULL
                    ELSE tstzrange(COALESCE(lower(s), '-infinity'), COALESCE(upper(e), 'infinity'), CASE WHEN upper_inc(e) THEN '[]' ELSE '[)' END) END
          FROM (SELECT fhir_date_range(p->>'start') AS s, fhir_date_range(p->>'end') AS e) x
      `;

/**
 * The clinical period of every stored version (issue 22.16, docs/consent.md "The date of a
 * resource"): when the care a resource records happened, judged by Consent `provision.dataPeriod`
 * instead of the date the exchange received the version.
 *
 * `clinical_period` is a generated column on `resource` and on `resource_history` (history has no
 * index rows), so every writer (single writes, bulk creates, anything later) stores it in the same
 * statement, and ADD COLUMN computes it for every existing row (the backfill; the tables are
 * rewritten once). NULL where the type has no clinical date or the version lacks it: the predicate
 * then uses `last_updated`. Computed from the stored JSON by the per-type mapping below (R4
 * `clinical-date` SearchParameter and the types' own date parameters); a value that is not a valid
 * FHIR date gives NULL rather than failing the write.
 */
export class ClinicalPeriod1732402320000 implements MigrationInterface {
  name = 'ClinicalPeriod1732402320000';

  async up(q: QueryRunner): Promise<void> {
    // A FHIR date, dateTime or instant as the range its precision covers (date-only values in UTC,
    // as Consent dataPeriod dates are read). timestamp (not timestamptz) arithmetic: independent of TimeZone.
    // A FHIR date, dateTime or instant as the range its precision covers (date-only values in UTC,
    // as Consent dataPeriod dates are read). timestamp (not timestamptz) arithmetic: independent of TimeZone.
    await q.query(`CREATE FUNCTION fhir_date_range(v text) RETURNS tstzrange LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$${FHIR_DATE_RANGE_SQL}$$`);
    // A Period: from its start to the end of its end's precision; an open end is unbounded (ongoing care).
    await q.query(`CREATE FUNCTION fhir_period_range(p jsonb) RETURNS tstzrange LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$${FHIR_PERIOD_RANGE_SQL}$$`);
    // The mapping (docs/consent.md): R4 clinical-date's expressions, then the types' own date parameters.
    await q.query(`
      CREATE FUNCTION fhir_clinical_period(resource_type text, c jsonb) RETURNS tstzrange LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT CASE resource_type
          WHEN 'AllergyIntolerance' THEN fhir_date_range(c->>'recordedDate')
          WHEN 'CarePlan' THEN fhir_period_range(c->'period')
          WHEN 'CareTeam' THEN fhir_period_range(c->'period')
          WHEN 'ClinicalImpression' THEN COALESCE(fhir_date_range(c->>'effectiveDateTime'), fhir_period_range(c->'effectivePeriod'), fhir_date_range(c->>'date'))
          WHEN 'Composition' THEN fhir_date_range(c->>'date')
          WHEN 'Consent' THEN fhir_date_range(c->>'dateTime')
          WHEN 'DiagnosticReport' THEN COALESCE(fhir_date_range(c->>'effectiveDateTime'), fhir_period_range(c->'effectivePeriod'))
          WHEN 'Encounter' THEN fhir_period_range(c->'period')
          WHEN 'EpisodeOfCare' THEN fhir_period_range(c->'period')
          WHEN 'FamilyMemberHistory' THEN fhir_date_range(c->>'date')
          WHEN 'Flag' THEN fhir_period_range(c->'period')
          WHEN 'Immunization' THEN fhir_date_range(c->>'occurrenceDateTime')
          WHEN 'List' THEN fhir_date_range(c->>'date')
          WHEN 'Observation' THEN COALESCE(fhir_date_range(c->>'effectiveDateTime'), fhir_date_range(c->>'effectiveInstant'), fhir_period_range(c->'effectivePeriod'))
          WHEN 'Procedure' THEN COALESCE(fhir_date_range(c->>'performedDateTime'), fhir_period_range(c->'performedPeriod'))
          WHEN 'RiskAssessment' THEN COALESCE(fhir_date_range(c->>'occurrenceDateTime'), fhir_period_range(c->'occurrencePeriod'))
          WHEN 'SupplyRequest' THEN fhir_date_range(c->>'authoredOn')
          WHEN 'Condition' THEN COALESCE(fhir_date_range(c->>'onsetDateTime'), fhir_period_range(c->'onsetPeriod'), fhir_date_range(c->>'recordedDate'))
          WHEN 'MedicationRequest' THEN fhir_date_range(c->>'authoredOn')
          WHEN 'MedicationAdministration' THEN COALESCE(fhir_date_range(c->>'effectiveDateTime'), fhir_period_range(c->'effectivePeriod'))
          WHEN 'MedicationStatement' THEN COALESCE(fhir_date_range(c->>'effectiveDateTime'), fhir_period_range(c->'effectivePeriod'))
          WHEN 'MedicationDispense' THEN fhir_date_range(c->>'whenHandedOver')
          WHEN 'ServiceRequest' THEN COALESCE(fhir_date_range(c->>'occurrenceDateTime'), fhir_period_range(c->'occurrencePeriod'), fhir_date_range(c->>'authoredOn'))
          WHEN 'DeviceRequest' THEN COALESCE(fhir_date_range(c->>'occurrenceDateTime'), fhir_period_range(c->'occurrencePeriod'), fhir_date_range(c->>'authoredOn'))
          WHEN 'CommunicationRequest' THEN COALESCE(fhir_date_range(c->>'occurrenceDateTime'), fhir_period_range(c->'occurrencePeriod'), fhir_date_range(c->>'authoredOn'))
          WHEN 'Communication' THEN fhir_date_range(c->>'sent')
          WHEN 'DocumentReference' THEN COALESCE(fhir_period_range(c->'context'->'period'), fhir_date_range(c->>'date'))
          WHEN 'ImagingStudy' THEN fhir_date_range(c->>'started')
          WHEN 'Specimen' THEN COALESCE(fhir_date_range(c->'collection'->>'collectedDateTime'), fhir_period_range(c->'collection'->'collectedPeriod'))
          WHEN 'Claim' THEN COALESCE(fhir_period_range(c->'billablePeriod'), fhir_date_range(c->>'created'))
          WHEN 'ExplanationOfBenefit' THEN COALESCE(fhir_period_range(c->'billablePeriod'), fhir_date_range(c->>'created'))
          WHEN 'QuestionnaireResponse' THEN fhir_date_range(c->>'authored')
          WHEN 'AdverseEvent' THEN fhir_date_range(c->>'date')
          WHEN 'DetectedIssue' THEN COALESCE(fhir_date_range(c->>'identifiedDateTime'), fhir_period_range(c->'identifiedPeriod'))
          WHEN 'NutritionOrder' THEN fhir_date_range(c->>'dateTime')
          WHEN 'VisionPrescription' THEN fhir_date_range(c->>'dateWritten')
          WHEN 'Goal' THEN fhir_date_range(c->>'startDate')
        END
      $$`);
    for (const table of ['resource', 'resource_history']) {
      await q.query(`ALTER TABLE ${table} ADD COLUMN clinical_period tstzrange GENERATED ALWAYS AS (fhir_clinical_period(resource_type, content)) STORED`);
    }
  }

  async down(q: QueryRunner): Promise<void> {
    for (const table of ['resource', 'resource_history']) await q.query(`ALTER TABLE ${table} DROP COLUMN clinical_period`);
    await q.query(`DROP FUNCTION fhir_clinical_period(text, jsonb)`);
    await q.query(`DROP FUNCTION fhir_period_range(jsonb)`);
    await q.query(`DROP FUNCTION fhir_date_range(text)`);
  }
}
