import type { EntityManager } from 'typeorm';
import type { AccessContext } from '../pipeline/access-context';
import { SqlParams } from '../storage/sql-params';

/**
 * Counts of patients, never rows: the aggregation behind `$evaluate-measure` (docs/public-health.md).
 * One statement: the Patients the AccessContext admits, each with at most one qualifying resource
 * (a Coverage, an Immunization, a Condition) found through the search index tables, grouped by
 * GROUPING SETS of the stratifier dimensions. Every value is bound; identifiers in the SQL are fixed.
 */

/** A characteristic a patient is counted under (a stratifier or one component of one). */
export type PatientDimension =
  /** Age in whole years at `asOf`, as the lower bound of its band (`bands`: ascending lower bounds). */
  | { kind: 'age-band'; bands: number[] }
  /** `Patient.gender`. */
  | { kind: 'sex' }
  /** The home address current at `asOf` (use home or absent, period covering it): district, state or the first digits of the postal code. */
  | { kind: 'region'; by: 'district' | 'state' | 'postal-prefix'; digits: number }
  /** The Patient's custodian organization (the reporting organization). */
  | { kind: 'custodian' }
  /** A token of the qualifying resource (e.g. Coverage `type`): its smallest code. */
  | { kind: 'event-token'; param: string }
  /** A reference of the qualifying resource (e.g. Coverage `payor`): its smallest target `Type/id`. */
  | { kind: 'event-reference'; param: string }
  /** The calendar month (UTC) of the qualifying resource's date, `YYYY-MM`. */
  | { kind: 'event-month' };

/** A coding to match: `system` undefined matches any system. */
export interface AggregateCoding {
  system?: string;
  code: string;
}

/** The resource that makes a patient count (a numerator, or a case). */
export interface QualifyingResource {
  resourceType: string;
  /** Reference parameter to the Patient (`beneficiary`, `patient`, `subject`). */
  patientParam: string;
  /** Token parameters each of which must match one of its codings (status, code, vaccine-code). */
  tokens: { param: string; codings: AggregateCoding[] }[];
  /** Date parameter and period [from, to): `overlaps` (any time in the period) or `starts-in` (begins in it). */
  date: { param: string; from: Date; to: Date; match: 'overlaps' | 'starts-in' };
  /** Only resources dated before the patient reached this age (months). */
  beforeAgeMonths?: number;
  /** The one counted when a patient has several: the earliest (first onset) or the latest start. */
  pick: 'earliest' | 'latest';
}

export interface PatientAggregateQuery {
  /** The instant ages and addresses are taken at (the period's end). */
  asOf: Date;
  /** Only patients aged [min, max) months at `asOf` (a birth cohort). */
  cohortAgeMonths?: { min: number; max: number };
  qualifying: QualifyingResource;
  /** `proportion`: every patient counts in `population`, those with a qualifying resource also in `numerator`; `cases`: only those with one. */
  mode: 'proportion' | 'cases';
  dimensions: PatientDimension[];
  /** Each set: the indexes of the dimensions grouped together (`[]` is the total). */
  groupingSets: number[][];
}

export interface PatientAggregateRow {
  /** Per dimension: its value in this row, or undefined when the row is not grouped by it. */
  values: (string | undefined)[];
  population: number;
  numerator: number;
}

/** The value of a dimension a patient has none of (no birth date, no current home address, no payer). */
export const NO_VALUE = 'unknown';
/** The value of a qualifying resource's characteristic for a patient without one (no active Coverage: payer type `none`). */
export const NONE = 'none';

/** The statement for a query (exported for the plan in docs/public-health.md and the bench). */
export function compilePatientAggregate(ctx: AccessContext, q: PatientAggregateQuery): { sql: string; values: unknown[] } {
  if (!q.dimensions.length && q.groupingSets.some((s) => s.length)) throw new Error('Grouping sets name dimensions that are not defined');
  const p = new SqlParams();
  const ev = q.qualifying;
  const type = `${p.bind(ev.resourceType)}::text`;
  // Bound only where used (an unused parameter has no type PostgreSQL can infer).
  let asOfParam: string | undefined;
  let asOfDateParam: string | undefined;
  const asOf = (): string => (asOfParam ??= `${p.bind(q.asOf.toISOString())}::timestamptz`);
  const asOfDate = (): string => (asOfDateParam ??= `${p.bind(q.asOf.toISOString().slice(0, 10))}::text`);
  const needsBirth = !!q.cohortAgeMonths || ev.beforeAgeMonths !== undefined || q.dimensions.some((d) => d.kind === 'age-band');
  const region = q.dimensions.find((d): d is Extract<PatientDimension, { kind: 'region' }> => d.kind === 'region');
  const needsSex = q.dimensions.some((d) => d.kind === 'sex');
  const ageAt = (): string => `age((${asOf()} AT TIME ZONE 'UTC')::date, (p.birth AT TIME ZONE 'UTC')::date)`;

  // The Patients counted: live and admitted by the AccessContext (consent or the counts-only system context).
  const patientCols = ['r.id', 'r.custodian_org AS custodian'];
  const patientJoins: string[] = [];
  if (needsBirth) {
    patientCols.push('b.birth');
    patientJoins.push(`LEFT JOIN (SELECT id, min(low) AS birth FROM search_date WHERE resource_type = 'Patient' AND param = 'birthdate' GROUP BY id) b ON b.id = r.id`);
  }
  if (needsSex) {
    patientCols.push('g.sex');
    patientJoins.push(`LEFT JOIN (SELECT DISTINCT ON (id) id, code AS sex FROM search_token WHERE resource_type = 'Patient' AND param = 'gender' ORDER BY id, code) g ON g.id = r.id`);
  }
  if (region) {
    const field = region.by === 'district' ? `a->>'district'` : region.by === 'state' ? `a->>'state'` : `left(a->>'postalCode', ${p.bind(region.digits)}::int)`;
    // The home address current at asOf (FHIR dates compare as text at their own precision).
    patientCols.push(
      `(SELECT ${field} FROM jsonb_array_elements(CASE WHEN jsonb_typeof(r.content->'address') = 'array' THEN r.content->'address' ELSE '[]'::jsonb END) a
         WHERE coalesce(a->>'use', 'home') = 'home' AND coalesce(a->'period'->>'start', '') <= ${asOfDate()} AND coalesce(a->'period'->>'end', '9999') >= ${asOfDate()}
         LIMIT 1) AS region`,
    );
  }
  const patients = `SELECT ${patientCols.join(', ')} FROM resource r ${patientJoins.join(' ')}
    WHERE r.resource_type = 'Patient' AND NOT r.deleted AND ${ctx.renderRead('r', p)}`;

  // The qualifying resources: live, admitted, matching every token, dated in the period; one per patient.
  const eventCols = ['ref.target_id AS patient', 'd.low AS at'];
  q.dimensions.forEach((d, i) => {
    if (d.kind === 'event-token') {
      eventCols.push(`(SELECT min(t.code) FROM search_token t WHERE t.resource_type = ${type} AND t.param = ${p.bind(d.param)} AND t.id = x.id) AS e${i}`);
    } else if (d.kind === 'event-reference') {
      eventCols.push(
        `(SELECT min(t.target_type || '/' || t.target_id) FROM search_reference t WHERE t.resource_type = ${type} AND t.param = ${p.bind(d.param)} AND t.id = x.id) AS e${i}`,
      );
    } else if (d.kind === 'event-month') {
      eventCols.push(`to_char(d.low AT TIME ZONE 'UTC', 'YYYY-MM') AS e${i}`);
    }
  });
  const from = `${p.bind(ev.date.from.toISOString())}::timestamptz`;
  const to = `${p.bind(ev.date.to.toISOString())}::timestamptz`;
  const dateMatch = ev.date.match === 'overlaps' ? `d.low < ${to} AND d.high >= ${from}` : `d.low >= ${from} AND d.low < ${to}`;
  // Each token parameter: one of its codings (a coding without a system matches the code in any system).
  const tokenMatches = ev.tokens.map(
    (t, i) => `x.id IN (SELECT t${i}.id FROM search_token t${i} JOIN unnest(${p.bind(t.codings.map((c) => c.system ?? null))}::text[], ${p.bind(t.codings.map((c) => c.code))}::text[]) c${i}(system, code)
        ON t${i}.code = c${i}.code AND (c${i}.system IS NULL OR t${i}.system = c${i}.system)
      WHERE t${i}.resource_type = ${type} AND t${i}.param = ${p.bind(t.param)})`,
  );
  const ageLimit = ev.beforeAgeMonths !== undefined ? `JOIN p ON p.id = ref.target_id AND d.low < p.birth + make_interval(months => ${p.bind(ev.beforeAgeMonths)}::int)` : '';
  const events = `SELECT DISTINCT ON (ref.target_id) ${eventCols.join(', ')}
    FROM resource x
    JOIN search_reference ref ON ref.resource_type = ${type} AND ref.param = ${p.bind(ev.patientParam)} AND ref.id = x.id AND ref.target_type = 'Patient'
    JOIN search_date d ON d.resource_type = ${type} AND d.param = ${p.bind(ev.date.param)} AND d.id = x.id AND ${dateMatch}
    ${ageLimit}
    WHERE x.resource_type = ${type} AND NOT x.deleted AND ${ctx.renderRead('x', p)}
      ${tokenMatches.map((m) => `AND ${m}`).join(' ')}
    ORDER BY ref.target_id, d.low ${ev.pick === 'earliest' ? 'ASC' : 'DESC'}, x.id`;

  // One row per counted patient with its dimension values.
  const dimCols = q.dimensions.map((d, i) => {
    const expr =
      d.kind === 'age-band'
        ? `(SELECT max(band) FROM unnest(${p.bind(d.bands)}::int[]) band WHERE band <= extract(year FROM ${ageAt()}))::text`
        : d.kind === 'sex'
          ? 'p.sex'
          : d.kind === 'region'
            ? 'p.region'
            : d.kind === 'custodian'
              ? `'Organization/' || p.custodian`
              : `e.e${i}`;
    // A characteristic of the qualifying resource, for a patient without one: NONE.
    const missing = expr.startsWith('e.') ? `CASE WHEN e.patient IS NULL THEN ${p.bind(NONE)}::text ELSE ${p.bind(NO_VALUE)}::text END` : `${p.bind(NO_VALUE)}::text`;
    return `coalesce(${expr}, ${missing}) AS d${i}`;
  });
  const cohort = q.cohortAgeMonths
    ? `AND (extract(year FROM ${ageAt()}) * 12 + extract(month FROM ${ageAt()})) >= ${p.bind(q.cohortAgeMonths.min)}
       AND (extract(year FROM ${ageAt()}) * 12 + extract(month FROM ${ageAt()})) < ${p.bind(q.cohortAgeMonths.max)}`
    : '';
  const counted = `SELECT ${['e.patient IS NOT NULL AS qualifies', ...dimCols].join(', ')}
    FROM p ${q.mode === 'cases' ? 'JOIN' : 'LEFT JOIN'} e ON e.patient = p.id
    WHERE TRUE ${cohort}`;
  const dims = q.dimensions.map((_, i) => `d${i}`);
  const grouping = dims.length ? `GROUPING(${dims.join(', ')})` : '0';
  const sets = q.groupingSets.map((s) => `(${s.map((i) => `d${i}`).join(', ')})`).join(', ');
  const sql = `WITH p AS MATERIALIZED (${patients}),
    e AS (${events}),
    u AS (${counted})
    SELECT ${grouping} AS grouping, ${[...dims, 'count(*)::int AS population', 'count(*) FILTER (WHERE qualifies)::int AS numerator'].join(', ')}
    FROM u GROUP BY GROUPING SETS (${sets || '()'})`;
  return { sql, values: p.values };
}

/** Runs the statement: rows of counts only (no id ever leaves the database). */
export async function aggregatePatients(ctx: AccessContext, tx: EntityManager, q: PatientAggregateQuery): Promise<PatientAggregateRow[]> {
  const { sql, values } = compilePatientAggregate(ctx, q);
  const rows: Record<string, unknown>[] = await tx.query(sql, values);
  const n = q.dimensions.length;
  return rows.map((row) => {
    const mask = Number(row.grouping);
    return {
      // GROUPING(): bit (n-1-i) set when dimension i is aggregated over in this row.
      values: q.dimensions.map((_, i) => ((mask >> (n - 1 - i)) & 1 ? undefined : String(row[`d${i}`]))),
      population: Number(row.population),
      numerator: Number(row.numerator),
    };
  });
}
