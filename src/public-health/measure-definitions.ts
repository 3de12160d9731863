import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Extension, Measure, MeasureGroupPopulation } from '@medplum/fhirtypes';
import { SERVER_CANONICAL_BASE } from '../fhir/operations/operation-definitions';
import type { AggregateCoding } from '../fhir/search/patient-aggregate.query';

const PROFILES_DIR = join(resolve(__dirname, '..', '..'), 'fhir-profiles');
export const STRATIFIER_SYSTEM = `${SERVER_CANONICAL_BASE}/CodeSystem/measure-stratifier`;
const QUALIFYING_EXT = `${SERVER_CANONICAL_BASE}/StructureDefinition/measure-qualifying-resource`;
const COHORT_EXT = `${SERVER_CANONICAL_BASE}/StructureDefinition/measure-cohort-age`;
const POPULATION_SYSTEM = 'http://terminology.hl7.org/CodeSystem/measure-population';

/** The characteristics a Measure's stratifiers may name (docs/public-health.md, "Stratifiers"). */
export const STRATIFIER_CODES = ['region', 'age-band', 'sex', 'payer-type', 'payer', 'reporting-organization', 'month'] as const;
export type StratifierCode = (typeof STRATIFIER_CODES)[number];

/** How the server computes one shipped Measure, read from its JSON at start. */
export interface MeasureSpec {
  measure: Measure;
  scoring: 'proportion' | 'cohort';
  /** Population codes reported, in order: proportion `denominator`, `numerator`; cohort `initial-population`. */
  populations: string[];
  qualifying: {
    resourceType: string;
    patientParam: string;
    tokens: { param: string; codings: AggregateCoding[] }[];
    dateParam: string;
    dateMatch: 'overlaps' | 'starts-in';
    /** `period`: dated in the period; `to-period-end`: any time up to the period's end. */
    window: 'period' | 'to-period-end';
    pick: 'earliest' | 'latest';
    beforeAgeMonths?: number;
  };
  cohortAgeMonths?: { min: number; max: number };
  /** Each stratifier: one code, or the codes of its components (a pair). */
  stratifiers: StratifierCode[][];
}

/**
 * The Measures shipped in `fhir-profiles/measure-*.json`: loaded at start (a malformed one fails
 * start), served read-only at `Measure/{id}`, and evaluated by `$evaluate-measure`.
 */
export function loadShippedMeasures(dir = PROFILES_DIR): MeasureSpec[] {
  return readdirSync(dir)
    .filter((f) => f.startsWith('measure-') && f.endsWith('.json'))
    .sort()
    .map((f) => {
      const measure = JSON.parse(readFileSync(join(dir, f), 'utf8')) as Measure;
      try {
        return measureSpec(measure);
      } catch (err) {
        throw new Error(`fhir-profiles/${f}: ${(err as Error).message}`);
      }
    });
}

export function measureSpec(measure: Measure): MeasureSpec {
  if (measure.resourceType !== 'Measure' || !measure.id || measure.url !== `${SERVER_CANONICAL_BASE}/Measure/${measure.id}`) {
    throw new Error(`a Measure with url ${SERVER_CANONICAL_BASE}/Measure/{id} was expected`);
  }
  const scoring = measure.scoring?.coding?.[0]?.code;
  if (scoring !== 'proportion' && scoring !== 'cohort') throw new Error(`scoring ${scoring} is not supported (proportion, cohort)`);
  if (measure.group?.length !== 1) throw new Error('exactly one group is supported');
  const group = measure.group[0];
  const byCode = new Map((group.population ?? []).map((p) => [p.code?.coding?.find((c) => c.system === POPULATION_SYSTEM)?.code, p]));
  const populations = scoring === 'proportion' ? ['denominator', 'numerator'] : ['initial-population'];
  if (byCode.size !== populations.length || populations.some((c) => !byCode.has(c))) throw new Error(`${scoring} needs exactly the populations ${populations.join(', ')}`);
  const counted = byCode.get(populations[populations.length - 1])!;
  if (scoring === 'proportion' && byCode.get('denominator')!.criteria?.expression !== 'Patient') throw new Error('the denominator must be Patient');
  const cohort = extension(byCode.get(populations[0])!, COHORT_EXT);
  const stratifiers = (group.stratifier ?? []).map((s) => {
    const codes = (s.component?.length ? s.component.map((c) => c.code) : [s.code]).map((cc) => cc?.coding?.find((c) => c.system === STRATIFIER_SYSTEM)?.code);
    if (codes.length > 2) throw new Error('a stratifier combines at most two characteristics');
    for (const code of codes) if (!STRATIFIER_CODES.includes(code as StratifierCode)) throw new Error(`unknown stratifier ${code}`);
    if (codes.length === 2 && codes[0] === codes[1]) throw new Error(`stratifier ${codes[0]} is combined with itself`);
    return codes as StratifierCode[];
  });
  const qualifying = qualifyingResource(counted);
  if (qualifying.resourceType !== 'Coverage' && stratifiers.flat().some((c) => c === 'payer' || c === 'payer-type')) {
    throw new Error('payer and payer-type stratify Coverage measures only');
  }
  return {
    measure,
    scoring,
    populations,
    qualifying,
    ...(cohort ? { cohortAgeMonths: { min: integer(cohort, 'minMonths'), max: integer(cohort, 'maxMonths') } } : {}),
    stratifiers,
  };
}

/** The counted population's criteria (`Type?param=system|code,…&…`, token parameters only) and its extension. */
function qualifyingResource(population: MeasureGroupPopulation): MeasureSpec['qualifying'] {
  const expression = population.criteria?.language === 'application/x-fhir-query' ? population.criteria.expression : undefined;
  const match = /^([A-Z][A-Za-z]+)\?(.+)$/.exec(expression ?? '');
  if (!match) throw new Error(`criteria ${expression} must be application/x-fhir-query Type?params`);
  const tokens = [...new URLSearchParams(match[2])].map(([param, value]) => ({
    param,
    codings: value.split(',').map((v): AggregateCoding => {
      const bar = v.lastIndexOf('|');
      return bar < 0 ? { code: v } : { system: v.slice(0, bar), code: v.slice(bar + 1) };
    }),
  }));
  const ext = extension(population, QUALIFYING_EXT);
  if (!ext) throw new Error(`the counted population needs the extension ${QUALIFYING_EXT}`);
  const text = (url: string): string => {
    const v = ext.extension?.find((e) => e.url === url);
    const value = v?.valueString ?? v?.valueCode;
    if (!value) throw new Error(`${QUALIFYING_EXT}: ${url} is missing`);
    return value;
  };
  const oneOf = <T extends string>(url: string, values: readonly T[]): T => {
    const v = text(url);
    if (!values.includes(v as T)) throw new Error(`${QUALIFYING_EXT}: ${url} must be one of ${values.join(', ')}`);
    return v as T;
  };
  const before = ext.extension?.find((e) => e.url === 'beforeAgeMonths')?.valueInteger;
  return {
    resourceType: match[1],
    patientParam: text('patientParam'),
    tokens,
    dateParam: text('dateParam'),
    dateMatch: oneOf('dateMatch', ['overlaps', 'starts-in'] as const),
    window: oneOf('window', ['period', 'to-period-end'] as const),
    pick: oneOf('pick', ['earliest', 'latest'] as const),
    ...(before !== undefined ? { beforeAgeMonths: before } : {}),
  };
}

function extension(element: { extension?: Extension[] }, url: string): Extension | undefined {
  return element.extension?.find((e) => e.url === url);
}

function integer(ext: Extension, url: string): number {
  const v = ext.extension?.find((e) => e.url === url)?.valueInteger;
  if (v === undefined) throw new Error(`${ext.url}: ${url} is missing`);
  return v;
}
