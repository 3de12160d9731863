import type { CodeableConcept, Extension, MeasureReport, MeasureReportGroupPopulation, MeasureReportGroupStratifierStratum, Quantity } from '@medplum/fhirtypes';
import { NONE, type PatientAggregateRow } from '../fhir/search/patient-aggregate.query';
import { STRATIFIER_SYSTEM, type MeasureSpec, type StratifierCode } from './measure-definitions';
import { suppress, type SuppressionCell, type SuppressionLine } from './suppression';

const POPULATION_SYSTEM = 'http://terminology.hl7.org/CodeSystem/measure-population';
/** FHIR's data-absent-reason extension and the code for a value withheld for privacy. */
export const DATA_ABSENT_REASON = 'http://hl7.org/fhir/StructureDefinition/data-absent-reason';
const MASKED: Extension = { url: DATA_ABSENT_REASON, valueCode: 'masked' };
/** Characteristics of the qualifying resource, whose value `none` means "not in the numerator". */
const EVENT_CODES: readonly StratifierCode[] = ['payer-type', 'payer', 'month'];

export interface MeasureReportInput {
  spec: MeasureSpec;
  /** The distinct stratifier codes, in the order of the rows' `values`. */
  dimensions: StratifierCode[];
  rows: PatientAggregateRow[];
  period: { start: string; end: string };
  /** When the counted data was read (MeasureReport.date: "data as of"). */
  asOf: string;
  threshold: number;
  /** Display of a dimension's value (age band lower bound → `18-44`). */
  label: (code: StratifierCode, value: string) => string;
}

/**
 * The summary MeasureReport of one evaluation, with small cells withheld (suppression.ts): every
 * population count of the group and of every stratum is a cell; a stratifier's strata, its margins
 * (the single stratifiers of a pair's components) and the group count are the lines they add up
 * along; a numerator is at most its denominator.
 */
export function buildMeasureReport(input: MeasureReportInput): MeasureReport {
  const { spec, dimensions, rows, threshold } = input;
  const keyOf = (values: (string | undefined)[]): string =>
    values
      .map((v, i) => (v === undefined ? undefined : `${dimensions[i]}=${v}`))
      .filter((v) => v !== undefined)
      .join('&');
  const byKey = new Map(rows.map((r) => [keyOf(r.values), r]));
  const standalone = new Set(spec.stratifiers.filter((s) => s.length === 1).map((s) => s[0]));
  const valuesOf = (code: StratifierCode): string[] =>
    rows
      .filter((r) => r.values.every((v, i) => (dimensions[i] === code ? v !== undefined : v === undefined)))
      .map((r) => r.values[dimensions.indexOf(code)]!)
      .sort();

  // The cells and lines of every population.
  const cells: SuppressionCell[] = [];
  const lines: SuppressionLine[] = [];
  const atMost: [string, string][] = [];
  const count = (pop: string, row: PatientAggregateRow): number => (pop === 'numerator' ? row.numerator : row.population);
  for (const pop of spec.populations) {
    const cell = (key: string): string => `${pop}|${key}`;
    for (const [key, row] of byKey) {
      const dims = key ? key.split('&').map((part) => part.split('=')[0] as StratifierCode) : [];
      // Shown: the group count, a standalone stratifier's strata, a pair's strata; a pair's margins otherwise only bound.
      const shown = dims.length !== 1 || standalone.has(dims[0]);
      cells.push({ key: cell(key), value: count(pop, row), shown, ...(key === '' ? { preferPublished: true } : {}) });
      if (pop === 'numerator') atMost.push([cell(key), `denominator|${key}`]);
    }
    const codes = [...new Set(spec.stratifiers.flat())];
    for (const code of codes) lines.push({ total: cell(''), parts: valuesOf(code).map((v) => cell(`${code}=${v}`)) });
    for (const s of spec.stratifiers.filter((x) => x.length === 2)) {
      const [a, b] = s;
      const pairKey = (va: string, vb: string): string => keyOf(dimensions.map((d) => (d === a ? va : d === b ? vb : undefined)));
      const present = (va: string, vb: string): boolean => byKey.has(pairKey(va, vb));
      for (const va of valuesOf(a)) lines.push({ total: cell(`${a}=${va}`), parts: valuesOf(b).filter((vb) => present(va, vb)).map((vb) => cell(pairKey(va, vb))) });
      for (const vb of valuesOf(b)) lines.push({ total: cell(`${b}=${vb}`), parts: valuesOf(a).filter((va) => present(va, vb)).map((va) => cell(pairKey(va, vb))) });
    }
  }
  // Patients without a qualifying resource (stratum `none` of a payer characteristic) are the
  // denominator less the numerator: that relation is public, so it is a line too.
  if (spec.scoring === 'proportion') {
    for (const code of EVENT_CODES) {
      const none = `${code}=${NONE}`;
      if (byKey.has(none)) lines.push({ total: 'denominator|', parts: [`denominator|${none}`, 'numerator|'] });
    }
  }
  const withheld = suppress({ cells, lines, atMost }, threshold);

  const populations = (key: string): { population: MeasureReportGroupPopulation[]; measureScore?: Quantity } => {
    const row = byKey.get(key);
    const population = spec.populations.map((pop): MeasureReportGroupPopulation => {
      const code = { coding: [{ system: POPULATION_SYSTEM, code: pop }] };
      const n = row ? count(pop, row) : 0;
      return withheld.has(`${pop}|${key}`) ? ({ code, _count: { extension: [MASKED] } } as MeasureReportGroupPopulation) : { code, count: n };
    });
    if (spec.scoring !== 'proportion') return { population };
    const masked = spec.populations.some((pop) => withheld.has(`${pop}|${key}`));
    const den = row?.population ?? 0;
    if (masked) return { population, measureScore: { extension: [MASKED] } };
    return { population, ...(den > 0 ? { measureScore: { value: Math.round((row!.numerator / den) * 10_000) / 10_000 } } : {}) };
  };

  const concept = (code: StratifierCode): CodeableConcept => ({ coding: [{ system: STRATIFIER_SYSTEM, code }], text: code });
  const stratifier = spec.stratifiers.map((codes) => {
    const strata: MeasureReportGroupStratifierStratum[] = [];
    for (const [key, row] of byKey) {
      const present = row.values.map((v, i) => (v === undefined ? undefined : dimensions[i]));
      if (present.filter(Boolean).length !== codes.length || !codes.every((c) => present.includes(c))) continue;
      const value = (c: StratifierCode): CodeableConcept => ({ text: input.label(c, row.values[dimensions.indexOf(c)]!) });
      strata.push({
        ...(codes.length === 1 ? { value: value(codes[0]) } : { component: codes.map((c) => ({ code: concept(c), value: value(c) })) }),
        ...populations(key),
      });
    }
    strata.sort((x, y) => stratumText(x).localeCompare(stratumText(y)));
    return { code: codes.length === 1 ? [concept(codes[0])] : codes.map(concept), stratum: strata };
  });

  return {
    resourceType: 'MeasureReport',
    status: 'complete',
    type: 'summary',
    measure: `${spec.measure.url}|${spec.measure.version}`,
    date: input.asOf,
    period: input.period,
    ...(spec.measure.improvementNotation ? { improvementNotation: spec.measure.improvementNotation } : {}),
    group: [{ ...populations(''), stratifier }],
  };
}

function stratumText(s: MeasureReportGroupStratifierStratum): string {
  return s.value?.text ?? (s.component ?? []).map((c) => c.value?.text).join('|');
}
