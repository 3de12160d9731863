import type { EntityManager } from 'typeorm';
import type { AccessContext } from '../pipeline/access-context';
import { SqlParams } from '../storage/sql-params';
import { UNRESTRICTED_SYSTEM_CONTEXTS } from '../pipeline/system-access';

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

/**
 * The shipped composite SearchParameter (fhir-profiles/searchparameter-patient-home-*-period.json)
 * per region kind: a home address's district, state or postal code with its period's start and end.
 */
export const HOME_ADDRESS_PARAM = { district: 'home-district-period', state: 'home-state-period', 'postal-prefix': 'home-postalcode-period' } as const;

/** `work_mem` of the statement (transaction-local): its hashes and sorts of ~100k patients stay in memory instead of spilling. */
export const AGGREGATE_WORK_MEM = '64MB';

/**
 * The statement for a query (exported for the plan in docs/public-health.md and the bench). Shaped
 * so the planner can hash, not probe (docs/public-health.md, "Computed in PostgreSQL"):
 * - `p`: the counted Patients with every characteristic from index rows (birth date, gender, the
 *   home address's region from a shipped composite), the cohort applied; no Patient content is read;
 * - `q`: the qualifying resources from index rows only (patient reference joined to `p` by hash,
 *   date, each token as a semi-join whose codes the planner estimates from its statistics: a
 *   coding list becomes `code = ANY(...)` per system, not a join against an unnested array, which
 *   the planner estimated at one row and answered with nested loops over 200,000 rows);
 * - `e`: one per patient, the AccessContext judging only these candidates' `resource` rows;
 * - per patient one row with its dimension values, aggregated first by the full combination of
 *   values (a few hundred rows) and only then by GROUPING SETS.
 */
export function compilePatientAggregate(ctx: AccessContext, q: PatientAggregateQuery): { sql: string; values: unknown[] } {
  if (!q.dimensions.length && q.groupingSets.some((s) => s.length)) throw new Error('Grouping sets name dimensions that are not defined');
  const p = new SqlParams();
  const ev = q.qualifying;
  const type = `${p.bind(ev.resourceType)}::text`;
  const needsBirth = !!q.cohortAgeMonths || ev.beforeAgeMonths !== undefined || q.dimensions.some((d) => d.kind === 'age-band');
  const region = q.dimensions.find((d): d is Extract<PatientDimension, { kind: 'region' }> => d.kind === 'region');
  const needsSex = q.dimensions.some((d) => d.kind === 'sex');

  // The Patients counted: live, admitted by the AccessContext (consent or the counts-only system context), in the cohort.
  // The custodian column only when counted by it: without it (and under a context whose predicate
  // reads no column) the Patients come from the live-resource index alone.
  const patientCols = ['r.id', ...(q.dimensions.some((d) => d.kind === 'custodian') ? ['r.custodian_org AS custodian'] : [])];
  const patientJoins: string[] = [];
  const patientWhere: string[] = [];
  if (needsBirth) {
    patientCols.push('b.birth', 'extract(year FROM ag.span)::int AS age_years');
    patientJoins.push(
      `LEFT JOIN (SELECT id, min(low) AS birth FROM search_date WHERE resource_type = 'Patient' AND param = 'birthdate' GROUP BY id) b ON b.id = r.id`,
      `CROSS JOIN LATERAL (SELECT age((${p.bind(q.asOf.toISOString())}::timestamptz AT TIME ZONE 'UTC')::date, (b.birth AT TIME ZONE 'UTC')::date) AS span) ag`,
    );
    if (q.cohortAgeMonths) {
      const months = `(extract(year FROM ag.span) * 12 + extract(month FROM ag.span))`;
      patientWhere.push(`${months} >= ${p.bind(q.cohortAgeMonths.min)}`, `${months} < ${p.bind(q.cohortAgeMonths.max)}`);
    }
  }
  if (needsSex) {
    // The smallest code, like the old DISTINCT ON; an aggregate hashes where DISTINCT ON sorted (on disk).
    patientCols.push('g.sex');
    patientJoins.push(`LEFT JOIN (SELECT id, min(code) AS sex FROM search_token WHERE resource_type = 'Patient' AND param = 'gender' GROUP BY id) g ON g.id = r.id`);
  }
  if (region) {
    // The home address current at asOf, from index rows only (no Patient content is read): the shipped
    // composite `home-{part}-period` pairs each home address's part with its period's start and end
    // (docs/public-health.md, "Region from index rows"). In use on the day of asOf: it starts by the
    // end of that day and ends after its start; of several such addresses, the smallest value.
    const day = Date.UTC(q.asOf.getUTCFullYear(), q.asOf.getUTCMonth(), q.asOf.getUTCDate());
    const value = region.by === 'postal-prefix' ? `left(c.c1_code, ${p.bind(region.digits)}::int)` : 'c.c1_code';
    patientCols.push('h.region');
    patientJoins.push(
      `LEFT JOIN (SELECT c.id, min(${value}) AS region FROM search_composite c
         WHERE c.resource_type = 'Patient' AND c.param = ${p.bind(HOME_ADDRESS_PARAM[region.by])}
           AND c.c2_low < ${p.bind(new Date(day + 86_400_000).toISOString())}::timestamptz AND c.c3_high > ${p.bind(new Date(day).toISOString())}::timestamptz
         GROUP BY c.id) h ON h.id = r.id`,
    );
  }
  const patients = `SELECT ${patientCols.join(', ')} FROM resource r ${patientJoins.join(' ')}
    WHERE r.resource_type = 'Patient' AND NOT r.deleted AND ${ctx.renderRead('r', p)} ${patientWhere.map((w) => `AND ${w}`).join(' ')}`;

  // The qualifying resources' candidates, from index rows only: the patient (a counted one), the date in the period, every token.
  const from = `${p.bind(ev.date.from.toISOString())}::timestamptz`;
  const to = `${p.bind(ev.date.to.toISOString())}::timestamptz`;
  const dateMatch = ev.date.match === 'overlaps' ? `d.low < ${to} AND d.high >= ${from}` : `d.low >= ${from} AND d.low < ${to}`;
  const ageLimit = ev.beforeAgeMonths !== undefined ? `AND d.low < p.birth + make_interval(months => ${p.bind(ev.beforeAgeMonths)}::int)` : '';
  const tokenMatches = ev.tokens.map(
    (t, i) => `EXISTS (SELECT FROM search_token t${i} WHERE t${i}.resource_type = ${type} AND t${i}.param = ${p.bind(t.param)} AND t${i}.id = ref.id AND ${codingMatch(`t${i}`, t.codings, p)})`,
  );
  const candidates = `SELECT ref.id, ref.target_id AS patient, d.low AS at
    FROM search_reference ref
    JOIN p ON p.id = ref.target_id
    JOIN search_date d ON d.resource_type = ${type} AND d.param = ${p.bind(ev.date.param)} AND d.id = ref.id AND ${dateMatch} ${ageLimit}
    WHERE ref.resource_type = ${type} AND ref.param = ${p.bind(ev.patientParam)} AND ref.target_type = 'Patient'
      ${tokenMatches.map((m) => `AND ${m}`).join(' ')}`;
  // One per patient, live and admitted by the AccessContext.
  const events = `SELECT DISTINCT ON (q.patient) q.patient, q.id, q.at
    FROM q JOIN resource x ON x.resource_type = ${type} AND x.id = q.id
    WHERE NOT x.deleted AND ${ctx.renderRead('x', p)}
    ORDER BY q.patient, q.at ${ev.pick === 'earliest' ? 'ASC' : 'DESC'}, q.id`;

  // One row per counted patient with its dimension values.
  const eventJoins: string[] = [];
  const dimCols = q.dimensions.map((d, i) => {
    let expr: string;
    if (d.kind === 'age-band') {
      // The band's lower bound: width_bucket counts the (ascending) bounds at or below the age; 0 (below the first) indexes no element.
      const bands = `${p.bind(d.bands)}::int[]`;
      expr = `(${bands})[width_bucket(p.age_years, ${bands})]::text`;
    } else if (d.kind === 'sex') expr = 'p.sex';
    else if (d.kind === 'region') expr = 'p.region';
    else if (d.kind === 'custodian') expr = `'Organization/' || p.custodian`;
    else if (d.kind === 'event-month') expr = `to_char(e.at AT TIME ZONE 'UTC', 'YYYY-MM')`;
    else {
      // The counted resource's smallest code or target, hashed from the index rows of all its type's resources.
      const param = p.bind(d.param);
      eventJoins.push(
        d.kind === 'event-token'
          ? `LEFT JOIN (SELECT id, min(code) AS v FROM search_token WHERE resource_type = ${type} AND param = ${param} GROUP BY id) e${i} ON e${i}.id = e.id`
          : `LEFT JOIN (SELECT id, min(target_type || '/' || target_id) AS v FROM search_reference WHERE resource_type = ${type} AND param = ${param} GROUP BY id) e${i} ON e${i}.id = e.id`,
      );
      expr = `e${i}.v`;
    }
    // A characteristic of the qualifying resource, for a patient without one: NONE.
    const ofEvent = d.kind === 'event-token' || d.kind === 'event-reference' || d.kind === 'event-month';
    const missing = ofEvent ? `CASE WHEN e.patient IS NULL THEN ${p.bind(NONE)}::text ELSE ${p.bind(NO_VALUE)}::text END` : `${p.bind(NO_VALUE)}::text`;
    return `coalesce(${expr}, ${missing})`;
  });
  const dims = q.dimensions.map((_, i) => `d${i}`);
  const counted = `SELECT ${[...dimCols.map((c, i) => `${c} AS d${i}`), 'count(*) AS population', 'count(e.patient) AS numerator'].join(', ')}
    FROM p ${q.mode === 'cases' ? 'JOIN' : 'LEFT JOIN'} e ON e.patient = p.id ${eventJoins.join(' ')}
    ${dims.length ? `GROUP BY ${dimCols.map((_, i) => String(i + 1)).join(', ')}` : ''}`;
  const grouping = dims.length ? `GROUPING(${dims.join(', ')})` : '0';
  const sets = q.groupingSets.map((s) => `(${s.map((i) => `d${i}`).join(', ')})`).join(', ');
  const sql = `WITH p AS MATERIALIZED (${patients}),
    q AS MATERIALIZED (${candidates}),
    e AS MATERIALIZED (${events}),
    u AS (${counted})
    SELECT ${grouping} AS grouping, ${[...dims, 'sum(population)::int AS population', 'sum(numerator)::int AS numerator'].join(', ')}
    FROM u GROUP BY GROUPING SETS (${sets || '()'})`;
  return { sql, values: p.values };
}

/**
 * A token index row at `alias` matching one of the codings (a coding without a system matches its
 * code in any system): per system one `system = $s AND code = ANY($codes)`, which the planner
 * estimates from the column statistics (the extended statistics on search_token include the pair).
 */
function codingMatch(alias: string, codings: AggregateCoding[], p: SqlParams): string {
  const bySystem = new Map<string | undefined, string[]>();
  for (const c of codings) bySystem.set(c.system, [...(bySystem.get(c.system) ?? []), c.code]);
  const terms = [...bySystem].map(([system, codes]) =>
    system === undefined ? `${alias}.code = ANY(${p.bind(codes)}::text[])` : `(${alias}.system = ${p.bind(system)} AND ${alias}.code = ANY(${p.bind(codes)}::text[]))`,
  );
  return terms.length ? `(${terms.join(' OR ')})` : 'FALSE';
}

/**
 * Whether the statement is planned with hash joins only. A birth cohort's age filter is an expression
 * the planner estimates at a few rows (14,981 at 47k patients were estimated at 2), and it then probed
 * the qualifying immunizations one patient at a time (1.1 s of 1.9). Under the counts-only context
 * every step joins sets of tens of thousands of rows, which a hash join does in one pass. Not under a
 * consent view: its predicate's probes need nested loops (measured: 455 -> 1,138 ms with them off),
 * nor without a cohort (MMR's plan was faster with them): bench/results/stats47k-*.
 */
function hashJoinsOnly(ctx: AccessContext, q: PatientAggregateQuery): boolean {
  return q.cohortAgeMonths !== undefined && ctx.system === UNRESTRICTED_SYSTEM_CONTEXTS['aggregate-statistics'];
}

/** Runs `work` in a transaction (a savepoint inside one) with the statement's settings, transaction-local. */
export async function withAggregateSettings<T>(tx: EntityManager, hashOnly: boolean, work: (tx: EntityManager) => Promise<T>): Promise<T> {
  return tx.transaction(async (inner) => {
    await inner.query(`SELECT set_config('work_mem', $1, true), set_config('enable_nestloop', $2, true)`, [AGGREGATE_WORK_MEM, hashOnly ? 'off' : 'on']);
    return work(inner);
  });
}

/** Runs the statement: rows of counts only (no id ever leaves the database). */
export async function aggregatePatients(ctx: AccessContext, tx: EntityManager, q: PatientAggregateQuery): Promise<PatientAggregateRow[]> {
  const { sql, values } = compilePatientAggregate(ctx, q);
  const rows: Record<string, unknown>[] = await withAggregateSettings(tx, hashJoinsOnly(ctx, q), (inner) => inner.query(sql, values));
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

/** EXPLAIN (ANALYZE, BUFFERS) of the statement under its settings, as text (bench:stats records it in docs/public-health.md). */
export async function explainPatientAggregate(ctx: AccessContext, tx: EntityManager, q: PatientAggregateQuery): Promise<string> {
  const { sql, values } = compilePatientAggregate(ctx, q);
  const rows: Record<string, string>[] = await withAggregateSettings(tx, hashJoinsOnly(ctx, q), (inner) => inner.query(`EXPLAIN (ANALYZE, BUFFERS) ${sql}`, values));
  return rows.map((r) => r['QUERY PLAN']).join('\n');
}
