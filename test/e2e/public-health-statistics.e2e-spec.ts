import request from 'supertest';
import type { Condition, Coverage, MeasureReport, MeasureReportGroupPopulation, MeasureReportGroupStratifierStratum, Patient, Resource } from '@medplum/fhirtypes';
import type { AuditRecord } from '../../src/fhir/pipeline/audit-record';
import { feasibleRanges, SuppressionCell, SuppressionLine } from '../../src/public-health/suppression';
import { SyntheticDataGenerator } from '../../src/synthetic/synthetic-data.generator';
import { captureAuditRecords } from '../support/audit';
import { registerTestClient } from '../support/auth';
import { consentResource } from '../support/consent';
import { FHIR_JSON } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

const RUN = Date.now().toString(36);
const ORG_A = `st-a-${RUN}`;
const ORG_B = `st-b-${RUN}`;
const T = 11; // the default threshold
const YEAR = { periodStart: '2024-01-01', periodEnd: '2024-12-31' };
const PUBHLTH = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActReason', code: 'PUBHLTH' }] };

/** What the test knows of each generated patient, read from the generator's own resources (not from the server). */
interface Person {
  id: string;
  sex: string;
  district: string;
  org: string;
  /** Active Coverage overlapping 2024: its type code and payer, else none. */
  payerType: string;
  payer: string;
  /** Month (YYYY-MM) of the first COVID-19 onset in 2024. */
  covidMonth?: string;
}

type Counts = Map<string, { den: number; num: number }>;

/**
 * Coverage statistics (`$evaluate-measure`, issue 26) on generated data loaded by two hospitals:
 * every shown count equals an independent count of the generator's output, every count 1..10 is
 * withheld (data-absent-reason masked) with complementary cells, periods are whole months, quarters
 * or years, individual-level report types are refused, and an evaluation is one audit event.
 */
describe('$evaluate-measure: coverage statistics with small-cell suppression', () => {
  let t: TestApp;
  let agency: string;
  let agencyId: string;
  let hospital: string;
  const gen = new SyntheticDataGenerator({ seed: 2026, patients: 64, idPrefix: `st${RUN}` });
  const resources: Resource[] = [...gen.resources()];
  const people: Person[] = [];
  /** Patients with a Consent permitting PUBHLTH (the view when statistics respect opt-out). */
  const permitted = new Set<string>();
  let records: AuditRecord[];

  beforeAll(async () => {
    t = await createTestApp();
    records = captureAuditRecords(t.app);
    const tokenA = await (await registerTestClient(t, { role: 'hospital', organization: ORG_A, scopes: ['system/*.cruds'] })).token();
    hospital = tokenA;
    const tokenB = await (await registerTestClient(t, { role: 'hospital', organization: ORG_B, scopes: ['system/*.cruds'] })).token();
    const client = await registerTestClient(t, { role: 'public-health', organization: `st-agency-${RUN}`, scopes: ['system/*.rs'], purposes: ['PUBHLTH'] });
    agencyId = client.clientId;
    agency = await client.token();
    // Even patients through hospital A, odd through B: the reporting organization is the custodian.
    let n = 0;
    for (const bundle of gen.transactionBundles()) {
      const token = n === 0 || (n - 1) % 2 === 0 ? tokenA : tokenB;
      const res = await request(t.http).post('/fhir').set('Authorization', `Bearer ${token}`).set('Content-Type', FHIR_JSON).send(bundle);
      if (res.status !== 200) throw new Error(`load: ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`);
      n++;
    }
    for (let p = 0; p < 64; p++) {
      // Three in four permit PUBHLTH; the fourth has no Consent (outside the PUBHLTH view under opt-out).
      if (p % 4 === 3) continue;
      permitted.add(gen.patientId(p));
      const res = await request(t.http)
        .post('/fhir/Consent')
        // Written by the patient's own hospital.
        .set('Authorization', `Bearer ${p % 2 === 0 ? tokenA : tokenB}`)
        .set('Content-Type', FHIR_JSON)
        .send(consentResource(gen.patientId(p), { type: 'permit', purpose: [PUBHLTH.coding[0]] }));
      expect(res.status).toBe(201);
    }

    const ofType = <R extends Resource>(type: R['resourceType']): R[] => resources.filter((r): r is R => r.resourceType === type);
    const coverage = new Map(ofType<Coverage>('Coverage').map((c) => [c.beneficiary.reference!.split('/')[1], c]));
    ofType<Patient>('Patient').forEach((p, i) => {
      const c = coverage.get(p.id!);
      const covered = c?.status === 'active' && c.period!.start! <= '2024-12-31' && (!c.period!.end || c.period!.end >= '2024-01-01');
      const onsets = ofType<Condition>('Condition')
        .filter((x) => x.subject.reference === `Patient/${p.id}` && x.code!.coding![0].code === '840539006' && x.onsetDateTime!.startsWith('2024'))
        .map((x) => x.onsetDateTime!)
        .sort();
      people.push({
        id: p.id!,
        sex: p.gender!,
        district: p.address![0].district!,
        org: `Organization/${i % 2 === 0 ? ORG_A : ORG_B}`,
        payerType: covered ? c.type!.coding![0].code! : 'none',
        payer: covered ? c.payor[0].reference! : 'none',
        ...(onsets.length ? { covidMonth: onsets[0].slice(0, 7) } : {}),
      });
    });
  }, 600_000);

  afterAll(() => t?.close());

  const evaluate = (measure: string, query: Record<string, string>, token = agency): request.Test =>
    request(t.http).get(`/fhir/Measure/${measure}/$evaluate-measure`).query(query).set('Authorization', `Bearer ${token}`);

  /** Independent counts per stratum key (`''` = the group) of a stratifier given as key functions. */
  function expected(of: Person[], keys: ((p: Person) => string)[], qualifies: (p: Person) => boolean): Counts {
    const out: Counts = new Map();
    for (const p of of) {
      for (const key of ['', keys.map((k) => k(p)).join('|')]) {
        const c = out.get(key) ?? { den: 0, num: 0 };
        c.den++;
        if (qualifies(p)) c.num++;
        out.set(key, c);
      }
    }
    return out;
  }
  const masked = (p: MeasureReportGroupPopulation): boolean =>
    p.count === undefined && (p as { _count?: { extension?: { url: string; valueCode: string }[] } })._count?.extension?.[0]?.valueCode === 'masked';
  const pop = (s: { population?: MeasureReportGroupPopulation[] }, code: string): MeasureReportGroupPopulation =>
    s.population!.find((x) => x.code!.coding![0].code === code)!;
  const keyOf = (s: MeasureReportGroupStratifierStratum): string => s.value?.text ?? s.component!.map((c) => c.value!.text).join('|');

  /**
   * What a reader of the report knows, rebuilt from the published document only: every shown count,
   * the strata of each single stratifier adding up to the group, each pair's rows and columns adding
   * up to the single strata (absent combinations are 0), a numerator at most its denominator, and
   * the uninsured = denominator − numerator. Each withheld cell's range over that system, by linear
   * programming, given the true counts of the test.
   */
  function rangesFromPublished(report: MeasureReport, truth: Map<string, number>): Map<string, { min: number; max: number }> {
    const group = report.group![0];
    const cells: SuppressionCell[] = [];
    const lines: SuppressionLine[] = [];
    const withheld = new Set<string>();
    const add = (key: string, p: MeasureReportGroupPopulation): void => {
      if (masked(p)) withheld.add(key);
      cells.push({ key, value: masked(p) ? truth.get(key)! : p.count!, shown: true });
    };
    for (const code of ['denominator', 'numerator']) {
      add(`${code}|`, pop(group, code));
      const single = new Map<string, string[]>();
      for (const st of group.stratifier!) {
        const dims = st.code!.map((c) => c.coding![0].code!);
        if (dims.length === 1) {
          for (const s of st.stratum!) add(`${code}|${dims[0]}=${keyOf(s)}`, pop(s, code));
          single.set(dims[0], st.stratum!.map(keyOf));
          lines.push({ total: `${code}|`, parts: st.stratum!.map((s) => `${code}|${dims[0]}=${keyOf(s)}`) });
        }
      }
      for (const st of group.stratifier!.filter((x) => x.code!.length === 2)) {
        const [a, b] = st.code!.map((c) => c.coding![0].code!);
        const pairKey = (va: string, vb: string): string => `${code}|${a}=${va}&${b}=${vb}`;
        for (const s of st.stratum!) add(pairKey(s.component![0].value!.text!, s.component![1].value!.text!), pop(s, code));
        const present = new Set(st.stratum!.map((s) => pairKey(s.component![0].value!.text!, s.component![1].value!.text!)));
        for (const va of single.get(a)!) lines.push({ total: `${code}|${a}=${va}`, parts: single.get(b)!.map((vb) => pairKey(va, vb)).filter((k) => present.has(k)) });
        for (const vb of single.get(b)!) lines.push({ total: `${code}|${b}=${vb}`, parts: single.get(a)!.map((va) => pairKey(va, vb)).filter((k) => present.has(k)) });
      }
    }
    for (const dim of ['payer-type', 'payer']) lines.push({ total: 'denominator|', parts: [`denominator|${dim}=none`, 'numerator|'] });
    const atMost = cells.filter((c) => c.key.startsWith('numerator|')).map((c): [string, string] => [c.key, c.key.replace('numerator|', 'denominator|')]);
    return feasibleRanges({ cells, lines, atMost }, withheld);
  }

  /**
   * Checks one stratifier of a report against the independent counts: the same strata; each count
   * shown equals the expected one; each expected 1..T-1 is masked; returns the complementary
   * (masked although 0 or ≥ T) cells. Each line (the strata of one population with the group's
   * count) with a masked cell has at least two.
   */
  function checkStratifier(report: MeasureReport, index: number, want: Counts, populations: [code: string, field: 'den' | 'num'][]): string[] {
    const strata = report.group![0].stratifier![index].stratum!;
    expect(strata.map(keyOf).sort()).toEqual([...want.keys()].filter((k) => k !== '').sort());
    const complementary: string[] = [];
    for (const [code, field] of populations) {
      let maskedInLine = 0;
      for (const s of strata) {
        const n = want.get(keyOf(s))![field];
        const p = pop(s, code);
        if (n >= 1 && n < T) expect(masked(p)).toBe(true);
        if (masked(p)) {
          maskedInLine++;
          if (n === 0 || n >= T) complementary.push(`${code}|${keyOf(s)}`);
        } else expect(p.count).toBe(n);
      }
      if (masked(pop(report.group![0], code))) maskedInLine++;
      expect(maskedInLine === 0 || maskedInLine >= 2).toBe(true);
    }
    return complementary;
  }

  it('serves the shipped Measures read-only', async () => {
    const res = await request(t.http).get('/fhir/Measure/insurance-coverage').set('Authorization', `Bearer ${agency}`);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ resourceType: 'Measure', id: 'insurance-coverage', url: 'http://hie.example.org/fhir/Measure/insurance-coverage' });
    const list = await request(t.http).get('/fhir/Measure').set('Authorization', `Bearer ${agency}`);
    expect(list.status).toBe(200);
    expect(list.body.entry.map((e: { resource: { id: string } }) => e.resource.id).sort()).toEqual([
      'case-count-covid19',
      'immunization-covid19-65-plus',
      'immunization-mmr-24-months',
      'insurance-coverage',
    ]);
    const od = await request(t.http).get('/fhir/OperationDefinition/evaluate-measure').set('Authorization', `Bearer ${hospital}`);
    expect(od.status).toBe(200);
    expect(od.body.base).toBe('http://hl7.org/fhir/OperationDefinition/Measure-evaluate-measure');
  });

  it('insurance coverage by payer type, payer, region and payer type × region: exact counts, small cells withheld with complements', async () => {
    records.length = 0;
    const res = await evaluate('insurance-coverage', YEAR);
    expect(res.status).toBe(200);
    const report = res.body as MeasureReport;
    expect(report).toMatchObject({ resourceType: 'MeasureReport', status: 'complete', type: 'summary', period: { start: '2024-01-01', end: '2024-12-31' } });
    expect(report.measure).toBe('http://hie.example.org/fhir/Measure/insurance-coverage|1.0.0');
    expect(Date.parse(report.date!)).toBeGreaterThan(Date.now() - 60_000);
    const covered = (p: Person): boolean => p.payerType !== 'none';
    const group = report.group![0];
    expect(pop(group, 'denominator').count).toBe(64);
    // 48 covered; withheld as a complement: with 64 shown it would give away the uninsured (64 − 48).
    expect(people.filter(covered).length).toBe(48);
    expect(masked(pop(group, 'numerator'))).toBe(true);
    expect(group.measureScore).toEqual({ extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/data-absent-reason', valueCode: 'masked' }] });
    // The uninsured are one stratum of payer type and of payer: withheld in both, never shown in one.
    for (const index of [0, 1]) expect(masked(pop(report.group![0].stratifier![index].stratum!.find((s) => s.value!.text === 'none')!, 'denominator'))).toBe(true);
    const both: [string, 'den' | 'num'][] = [
      ['denominator', 'den'],
      ['numerator', 'num'],
    ];
    const complementary = [
      ...checkStratifier(report, 0, expected(people, [(p) => p.payerType], covered), both),
      ...checkStratifier(report, 1, expected(people, [(p) => p.payer], covered), both),
      ...checkStratifier(report, 2, expected(people, [(p) => p.district], covered), both),
      ...checkStratifier(report, 3, expected(people, [(p) => p.payerType, (p) => p.district], covered), both),
    ];
    // The generated data has small cells (the uninsured, pairs) whose complements are larger counts.
    expect(complementary.length).toBeGreaterThan(0);
    // Every withheld cell, given everything the report publishes, still ranges over at least T values (and holds its true count).
    const truth = new Map<string, number>();
    const put = (key: string, want: Counts): void => {
      for (const [k, c] of want) {
        truth.set(`denominator|${k ? `${key}=${k}` : ''}`.replace(/\|=/, '|'), c.den);
        truth.set(`numerator|${k ? `${key}=${k}` : ''}`.replace(/\|=/, '|'), c.num);
      }
    };
    put('payer-type', expected(people, [(p) => p.payerType], covered));
    put('payer', expected(people, [(p) => p.payer], covered));
    put('region', expected(people, [(p) => p.district], covered));
    for (const [k, c] of expected(people, [(p) => p.payerType, (p) => p.district], covered)) {
      if (!k) continue;
      const [pt, d] = k.split('|');
      truth.set(`denominator|payer-type=${pt}&region=${d}`, c.den);
      truth.set(`numerator|payer-type=${pt}&region=${d}`, c.num);
    }
    const ranges = rangesFromPublished(report, truth);
    expect(ranges.size).toBeGreaterThan(10);
    for (const [key, r] of ranges) {
      expect({ key, wide: r.max - r.min + 1 >= T, holdsTruth: r.min <= truth.get(key)! && truth.get(key)! <= r.max }).toEqual({ key, wide: true, holdsTruth: true });
    }
    // A stratum whose numerator or denominator is withheld has no score, and says why.
    for (const s of report.group![0].stratifier!.flatMap((x) => x.stratum!)) {
      if (masked(pop(s, 'numerator')) || masked(pop(s, 'denominator'))) expect(s.measureScore).toEqual({ extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/data-absent-reason', valueCode: 'masked' }] });
      else expect(s.measureScore!.value).toBe(Math.round((pop(s, 'numerator').count! / pop(s, 'denominator').count!) * 10_000) / 10_000);
    }

    // One audit event: the operation, naming the Measure, the period and the agency; no patient.
    const own = records.filter((r) => r.kind !== 'system-access');
    expect(own).toHaveLength(1);
    expect(records).toHaveLength(1);
    expect(own[0]).toMatchObject({
      kind: 'operation',
      subtype: 'evaluate-measure',
      outcome: 'success',
      status: 200,
      query: 'periodStart=2024-01-01&periodEnd=2024-12-31&reportType=summary',
      entities: [{ reference: 'Measure/insurance-coverage', patients: [] }],
      patients: [],
    });
    expect(own[0].principal.clientId).toBe(agencyId);
  });

  it('case counts by month (a time series), region, age band and sex: each patient once, in the month of first onset', async () => {
    const res = await evaluate('case-count-covid19', YEAR);
    expect(res.status).toBe(200);
    const report = res.body as MeasureReport;
    const cases = people.filter((p) => p.covidMonth);
    const total = cases.length;
    const group = pop(report.group![0], 'initial-population');
    if (total >= 1 && total < T) expect(masked(group)).toBe(true);
    else expect(group.count).toBe(total);
    const ip: [string, 'den' | 'num'][] = [['initial-population', 'den']];
    checkStratifier(report, 0, expected(cases, [(p) => p.covidMonth!], () => true), ip);
    checkStratifier(report, 1, expected(cases, [(p) => p.district], () => true), ip);
    checkStratifier(report, 3, expected(cases, [(p) => p.sex], () => true), ip);
    expect(report.group![0].measureScore).toBeUndefined();
  });

  it('immunization coverage of a cohort by age: COVID-19 at 65 and over, MMR by 24 months', async () => {
    const patients = resources.filter((r): r is Patient => r.resourceType === 'Patient');
    const immunized = (id: string, codes: string[], before: string): boolean =>
      resources.some(
        (r) =>
          r.resourceType === 'Immunization' &&
          r.patient.reference === `Patient/${id}` &&
          r.status === 'completed' &&
          codes.includes(r.vaccineCode.coding![0].code!) &&
          r.occurrenceDateTime! < before,
      );
    /** Whole months of age on 2024-12-31. */
    const months = (birth: string): number => {
      const [y, m, d] = birth.split('-').map(Number);
      return (2024 - y) * 12 + (12 - m) - (31 < d ? 1 : 0);
    };
    const addMonths = (birth: string, n: number): string => {
      const [y, m, d] = birth.split('-').map(Number);
      const t = new Date(Date.UTC(y, m - 1 + n, d));
      return t.toISOString();
    };
    const cases: [string, (p: Patient) => boolean, (p: Patient) => boolean][] = [
      ['immunization-covid19-65-plus', (p) => months(p.birthDate!) >= 780, (p) => immunized(p.id!, ['207', '208'], '2025-01-01')],
      ['immunization-mmr-24-months', (p) => months(p.birthDate!) >= 24 && months(p.birthDate!) < 36, (p) => immunized(p.id!, ['03', '94'], addMonths(p.birthDate!, 24) < '2025-01-01' ? addMonths(p.birthDate!, 24) : '2025-01-01')],
    ];
    for (const [measure, inCohort, qualifies] of cases) {
      const res = await evaluate(measure, YEAR);
      expect(res.status).toBe(200);
      const group = (res.body as MeasureReport).group![0];
      const cohort = patients.filter(inCohort);
      for (const [code, n] of [
        ['denominator', cohort.length],
        ['numerator', cohort.filter(qualifies).length],
      ] as const) {
        const p = pop(group, code);
        if (n >= 1 && n < T) expect({ measure, code, masked: masked(p) }).toEqual({ measure, code, masked: true });
        else if (!masked(p)) expect({ measure, code, count: p.count }).toEqual({ measure, code, count: n });
      }
    }
  });

  it('refuses periods that are not one whole calendar month, quarter or year (400 naming the parameter), and individual-level reports', async () => {
    const cases: [Record<string, string>, string[]][] = [
      [{ periodStart: '2024-01-02', periodEnd: '2024-12-31' }, ['periodStart']],
      [{ periodStart: '2024-01-01', periodEnd: '2024-12-30' }, ['periodEnd']],
      [{ periodStart: '2024-01-01', periodEnd: '2024-02-29' }, ['periodStart', 'periodEnd']],
      [{ periodStart: '2024-02-01', periodEnd: '2024-04-30' }, ['periodStart', 'periodEnd']],
      [{ periodStart: '2024-03', periodEnd: '2024-03-31' }, ['periodStart']],
      [{ periodStart: '2024-02-30', periodEnd: '2024-03-31' }, ['periodStart']],
      [{ periodStart: '2024-01-01' }, ['periodEnd']],
    ];
    for (const [query, expression] of cases) {
      const res = await evaluate('insurance-coverage', query);
      expect([res.status, res.body.resourceType, res.body.issue[0].code, res.body.issue[0].expression]).toEqual([400, 'OperationOutcome', expect.any(String), expression]);
    }
    for (const [start, end] of [
      ['2024-02-01', '2024-02-29'],
      ['2024-04-01', '2024-06-30'],
    ]) {
      expect((await evaluate('insurance-coverage', { periodStart: start, periodEnd: end })).status).toBe(200);
    }
    const subject = await evaluate('insurance-coverage', { ...YEAR, reportType: 'subject' });
    expect([subject.status, subject.body.issue[0].code, subject.body.issue[0].expression]).toEqual([403, 'forbidden', ['reportType']]);
    expect((await evaluate('insurance-coverage', { ...YEAR, reportType: 'subject-list' })).status).toBe(403);
    expect((await evaluate('no-such-measure', YEAR)).status).toBe(404);
    // Hospitals do not run statistics (the role is public-health's).
    expect((await evaluate('insurance-coverage', YEAR, hospital)).status).toBe(403);
  });

  it('with statistics.respectOptOut the consent-bounded PUBHLTH view decides which patients count', async () => {
    process.env.STATISTICS_RESPECT_OPT_OUT = 'true';
    const optOut = await createTestApp();
    delete process.env.STATISTICS_RESPECT_OPT_OUT;
    try {
      const res = await request(optOut.http).get('/fhir/Measure/insurance-coverage/$evaluate-measure').query(YEAR).set('Authorization', `Bearer ${agency}`);
      expect(res.status).toBe(200);
      const report = res.body as MeasureReport;
      const counted = people.filter((p) => permitted.has(p.id));
      const covered = (p: Person): boolean => p.payerType !== 'none';
      const n = counted.filter(covered).length;
      // Only the permitting patients count: 48 of 64, every count shown exact or withheld.
      expect(counted.length).toBe(48);
      expect(pop(report.group![0], 'denominator').count).toBe(48);
      const num = pop(report.group![0], 'numerator');
      if (!masked(num)) expect(num.count).toBe(n);
      checkStratifier(report, 0, expected(counted, [(p) => p.payerType], covered), [
        ['denominator', 'den'],
        ['numerator', 'num'],
      ]);
    } finally {
      await optOut.close();
    }
  });
});
