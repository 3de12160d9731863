import { AccessContext } from '../pipeline/access-context';
import type { Principal } from '../pipeline/principal';
import { compilePatientAggregate, PatientAggregateQuery } from './patient-aggregate.query';

const issue = AccessContext.claimIssuer();
const context = issue({
  principal: { kind: 'system', name: 'aggregate-statistics', role: 'system', scopes: [] } as unknown as Principal,
  read: [],
  write: [],
  lookups: { mayRead: () => true, lookup: () => Promise.reject(new Error('none')) },
});
const oneLine = (sql: string): string => sql.replace(/\s+/g, ' ').trim();
const CVX = 'http://hl7.org/fhir/sid/cvx';

/** MMR by 24 months, shaped like the shipped Measure: a cohort, an age limit, two token parameters (one of them without a system). */
const mmr: PatientAggregateQuery = {
  asOf: new Date('2024-12-31T23:59:59.999Z'),
  cohortAgeMonths: { min: 24, max: 36 },
  qualifying: {
    resourceType: 'Immunization',
    patientParam: 'patient',
    tokens: [
      { param: 'status', codings: [{ code: 'completed' }] },
      { param: 'vaccine-code', codings: [{ system: CVX, code: '03' }, { system: CVX, code: '94' }, { code: 'MMR-local' }] },
    ],
    date: { param: 'date', from: new Date(Date.UTC(1, 0, 1)), to: new Date('2025-01-01T00:00:00Z'), match: 'starts-in' },
    beforeAgeMonths: 24,
    pick: 'earliest',
  },
  mode: 'proportion',
  dimensions: [{ kind: 'region', by: 'postal-prefix', digits: 3 }, { kind: 'sex' }, { kind: 'age-band', bands: [0, 5, 18, 45, 65] }, { kind: 'event-token', param: 'vaccine-code' }],
  groupingSets: [[], [0], [1], [2], [3], [0, 1]],
};

describe('compilePatientAggregate (the statement behind $evaluate-measure)', () => {
  it('binds every value: codes, systems, parameter names, dates, ages and bands appear only as $n', () => {
    const { sql, values } = compilePatientAggregate(context, mmr);
    const text = sql.replace(/\$\d+/g, '$n');
    for (const literal of [CVX, '03', '94', 'MMR-local', 'completed', 'vaccine-code', '2024', '2025', '24', '36']) {
      expect(text).not.toContain(literal);
    }
    expect(values).toEqual(expect.arrayContaining(['Immunization', 'status', 'vaccine-code', CVX, ['03', '94'], ['MMR-local'], ['completed'], 24, 36, [0, 5, 18, 45, 65], 3]));
  });

  it('matches a coding list per system with code = ANY (which the planner estimates from statistics), never by joining an unnested list', () => {
    const { sql, values } = compilePatientAggregate(context, mmr);
    const line = oneLine(sql);
    expect(line).not.toMatch(/unnest/i);
    const n = (v: unknown): number => values.findIndex((x) => JSON.stringify(x) === JSON.stringify(v)) + 1;
    expect(line).toContain(`t0.code = ANY($${n(['completed'])}::text[])`);
    expect(line).toContain(`((t1.system = $${n(CVX)} AND t1.code = ANY($${n(['03', '94'])}::text[])) OR t1.code = ANY($${n(['MMR-local'])}::text[]))`);
  });

  it('builds the counted patients, the candidates and one resource per patient as materialized steps, then groups a per-combination pre-aggregate', () => {
    const line = oneLine(compilePatientAggregate(context, mmr).sql);
    expect(line).toMatch(/^WITH p AS MATERIALIZED \(.*\), q AS MATERIALIZED \(.*\), e AS MATERIALIZED \(SELECT DISTINCT ON \(q\.patient\).*\), u AS \(SELECT .* GROUP BY 1, 2, 3, 4\) SELECT GROUPING\(d0, d1, d2, d3\) AS grouping/);
    expect(line).toContain('GROUP BY GROUPING SETS ((), (d0), (d1), (d2), (d3), (d0, d1))');
    // The cohort is applied inside p, before the region and the qualifying resources are joined.
    expect(line).toMatch(/p AS MATERIALIZED \(SELECT [^)]*.* WHERE r\.resource_type = 'Patient' AND NOT r\.deleted AND .* AND \(extract\(year FROM ag\.span\) \* 12/);
  });

  it('reads index rows only: no stored content; the region from the home-address composite in use on the day of asOf', () => {
    const { sql, values } = compilePatientAggregate(context, mmr);
    const line = oneLine(sql);
    expect(line).not.toMatch(/content/);
    // No custodian dimension: the Patient's row is not read for its custodian column either.
    expect(line).not.toMatch(/custodian_org/);
    const n = (v: unknown): number => values.findIndex((x) => JSON.stringify(x) === JSON.stringify(v)) + 1;
    expect(line).toContain(
      `SELECT c.id, min(left(c.c1_code, $${n(3)}::int)) AS region FROM search_composite c WHERE c.resource_type = 'Patient' AND c.param = $${n('home-postalcode-period')} AND c.c2_low < $${n('2025-01-01T00:00:00.000Z')}::timestamptz AND c.c3_high > $${n('2024-12-31T00:00:00.000Z')}::timestamptz GROUP BY c.id`,
    );
    const withCustodian = oneLine(compilePatientAggregate(context, { ...mmr, dimensions: [{ kind: 'custodian' }], groupingSets: [[], [0]] }).sql);
    expect(withCustodian).toContain('r.custodian_org AS custodian');
  });

  it('a query without dimensions is one total row', () => {
    const line = oneLine(compilePatientAggregate(context, { ...mmr, dimensions: [], groupingSets: [[]] }).sql);
    expect(line).toMatch(/SELECT 0 AS grouping, sum\(population\)::int AS population, sum\(numerator\)::int AS numerator FROM u GROUP BY GROUPING SETS \(\(\)\)$/);
    expect(line).not.toMatch(/GROUP BY 1/);
  });
});
