import { putAll } from '../support/bundles';
import { createTestApp, TestApp } from '../support/test-app';

const RUN = `search-${Date.now().toString(36)}`;
const TAG = { system: 'urn:test:run', code: RUN };
const TAG_Q = `_tag=${encodeURIComponent(`urn:test:run|${RUN}`)}`;
const MRN = 'http://hospital-s.example.org/mrn';
const LOINC = 'http://loinc.org';
const UCUM = 'http://unitsofmeasure.org';

/** Ids are local to this file: `p1` is stored as `<RUN>-p1`. */
const id = (local: string) => `${RUN}-${local}`;

function patient(local: string, extra: Record<string, unknown>) {
  return {
    resourceType: 'Patient',
    id: id(local),
    meta: { tag: [TAG] },
    identifier: [{ system: MRN, value: `${RUN}-${local}` }],
    ...extra,
  };
}

function observation(local: string, extra: Record<string, unknown>) {
  return { resourceType: 'Observation', id: id(local), meta: { tag: [TAG] }, status: 'final', ...extra };
}

const resources = [
  patient('p1', {
    meta: { tag: [TAG], profile: ['http://example.org/fhir/StructureDefinition/p1-profile'] },
    identifier: [
      { system: MRN, value: 'A1', type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'MR' }] } },
    ],
    name: [{ family: 'Müller', given: ['Anna', 'Lena'] }],
    gender: 'female',
    birthDate: '1980-04-01',
    active: true,
    address: [{ city: 'Townsville', district: 'North' }],
    generalPractitioner: [{ reference: `Practitioner/${id('pr1')}` }],
  }),
  patient('p2', {
    identifier: [{ system: MRN, value: 'A2' }],
    name: [{ family: 'MULLER', given: ['José'] }],
    gender: 'male',
    birthDate: '1980',
    address: [{ city: 'Portside', district: 'South' }],
    link: [{ other: { reference: `Patient/${id('p3')}` }, type: 'seealso' }],
  }),
  patient('p3', {
    identifier: [{ system: 'http://other.example.org/ids', value: 'A1' }],
    name: [{ family: 'Smith', given: ['Zoë'] }],
    gender: 'female',
    birthDate: '1975-12-31',
    link: [{ other: { reference: `Patient/${id('p2')}` }, type: 'seealso' }],
  }),
  patient('p4', {
    identifier: [{ system: MRN, value: 'A4' }],
    name: [{ family: 'Ångström' }],
    gender: 'other',
    generalPractitioner: [{ reference: `Practitioner/${id('pr2')}` }],
  }),
  { resourceType: 'Practitioner', id: id('pr1'), meta: { tag: [TAG] }, name: [{ family: 'House' }] },
  { resourceType: 'Practitioner', id: id('pr2'), meta: { tag: [TAG] }, name: [{ family: 'Grey' }] },
  observation('o1', {
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
    code: { coding: [{ system: LOINC, code: '8867-4', display: 'Heart rate' }] },
    subject: { reference: `Patient/${id('p1')}` },
    performer: [{ reference: `Practitioner/${id('pr1')}` }],
    effectiveDateTime: '2020-06-15T10:00:00+02:00',
    valueQuantity: { value: 72, unit: '/min', system: UCUM, code: '/min' },
  }),
  observation('o2', {
    code: { coding: [{ system: LOINC, code: '29463-7' }], text: 'Body weight' },
    subject: { reference: `http://localhost:8080/fhir/Patient/${id('p1')}` },
    effectivePeriod: { start: '2021-01-01' },
    valueQuantity: { value: 100, unit: 'kg', system: UCUM, code: 'kg' },
  }),
  observation('o3', {
    code: { coding: [{ system: LOINC, code: '8867-4' }] },
    subject: { reference: `Patient/${id('p2')}` },
    effectiveDateTime: '2019-06-01',
    valueQuantity: { value: 99.6, unit: '/min', system: UCUM, code: '/min' },
  }),
  observation('o4', {
    code: { coding: [{ system: LOINC, code: '8867-4' }] },
    subject: { reference: `Patient/${id('p3')}` },
    effectiveDateTime: '2019-12-31T23:30:00-05:00',
  }),
];

describe('search', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
    const res = await putAll(t.api, resources);
    expect(res.status).toBe(200);
  });
  afterAll(() => t.close());

  async function ids(path: string): Promise<string[]> {
    const res = await t.api.get(`${path}${path.includes('?') ? '&' : '?'}${TAG_Q}&_count=100`);
    expect({ status: res.status, issue: res.body.issue }).toEqual({ status: 200, issue: undefined });
    expect(res.body.type).toBe('searchset');
    // No matches: no `entry` (FHIR JSON has no empty arrays).
    return (res.body.entry ?? [])
      .filter((e: { search: { mode: string } }) => e.search.mode === 'match')
      .map((e: { resource: { id: string } }) => e.resource.id.slice(RUN.length + 1))
      .sort();
  }

  const cases: [string, string, string[]][] = [
    // string: prefix, case- and accent-insensitive, over every part of the name and address
    ['string default is case/accent-insensitive prefix', '/fhir/Patient?name=muller', ['p1', 'p2']],
    ['string prefix', '/fhir/Patient?name=Müll', ['p1', 'p2']],
    ['string :exact', '/fhir/Patient?name:exact=Müller', ['p1']],
    ['string :contains', '/fhir/Patient?name:contains=ULL', ['p1', 'p2']],
    ['string given name with accent', '/fhir/Patient?given=jose', ['p2']],
    ['string second given name', '/fhir/Patient?given=lena', ['p1']],
    ['string accented family', '/fhir/Patient?family=angstrom', ['p4']],
    ['string umlaut folded', '/fhir/Patient?name=zoe', ['p3']],
    ['string address district', '/fhir/Patient?address=north', ['p1']],
    ['string address-city', '/fhir/Patient?address-city=port', ['p2']],
    ['string OR values', '/fhir/Patient?family=smith,grey', ['p3']],
    ['string AND of repeated parameters', '/fhir/Patient?name=muller&given=anna', ['p1']],
    // token
    ['token code', '/fhir/Patient?gender=female', ['p1', 'p3']],
    ['token :not', '/fhir/Patient?gender:not=female', ['p2', 'p4']],
    ['token system|code', `/fhir/Patient?identifier=${encodeURIComponent(`${MRN}|A1`)}`, ['p1']],
    ['token code in any system', '/fhir/Patient?identifier=A1', ['p1', 'p3']],
    ['token system|', `/fhir/Patient?identifier=${encodeURIComponent(`${MRN}|`)}`, ['p1', 'p2', 'p4']],
    ['token |code (no system)', '/fhir/Patient?identifier=%7CA1', []],
    ['token :of-type', `/fhir/Patient?identifier:of-type=${encodeURIComponent('http://terminology.hl7.org/CodeSystem/v2-0203|MR|A1')}`, ['p1']],
    ['token boolean', '/fhir/Patient?active=true', ['p1']],
    ['token CodeableConcept system|code', `/fhir/Observation?code=${encodeURIComponent(`${LOINC}|8867-4`)}`, ['o1', 'o3', 'o4']],
    ['token :text on display', '/fhir/Observation?code:text=heart', ['o1']],
    ['token :text on CodeableConcept.text', '/fhir/Observation?code:text=body', ['o2']],
    ['token :missing', '/fhir/Patient?active:missing=true', ['p2', 'p3', 'p4']],
    ['_id', `/fhir/Patient?_id=${id('p1')},${id('p3')}`, ['p1', 'p3']],
    // date: precision ranges, prefixes, time zones, open periods
    ['date year', '/fhir/Patient?birthdate=1980', ['p1', 'p2']],
    ['date month: a year-only value is not within the month', '/fhir/Patient?birthdate=1980-04', ['p1']],
    ['date lt', '/fhir/Patient?birthdate=lt1980', ['p3']],
    ['date ge overlaps', '/fhir/Patient?birthdate=ge1980-04-01', ['p1', 'p2']],
    ['date gt', '/fhir/Patient?birthdate=gt1980-04-01', ['p2']],
    ['date sa', '/fhir/Patient?birthdate=sa1979', ['p1', 'p2']],
    ['date eb', '/fhir/Patient?birthdate=eb1979', ['p3']],
    ['date ne', '/fhir/Patient?birthdate=ne1980', ['p3']],
    ['date :missing', '/fhir/Patient?birthdate:missing=true', ['p4']],
    ['dateTime with offset', '/fhir/Observation?date=2020-06-15', ['o1']],
    ['dateTime that crosses a year in UTC', '/fhir/Observation?date=2020-01-01', ['o4']],
    ['open-ended Period', '/fhir/Observation?date=ge2030', ['o2']],
    ['date range of two parameters', '/fhir/Observation?date=ge2019&date=lt2020', ['o3']],
    // quantity
    ['quantity implicit precision', '/fhir/Observation?value-quantity=100', ['o2', 'o3']],
    ['quantity with system and unit', `/fhir/Observation?value-quantity=${encodeURIComponent(`100|${UCUM}|kg`)}`, ['o2']],
    ['quantity gt', '/fhir/Observation?value-quantity=gt99.7', ['o2']],
    ['quantity lt', '/fhir/Observation?value-quantity=lt80', ['o1']],
    ['quantity :missing', '/fhir/Observation?value-quantity:missing=true', ['o4']],
    // reference
    ['reference Type/id', `/fhir/Observation?subject=Patient/${id('p1')}`, ['o1', 'o2']],
    ['reference bare id', `/fhir/Observation?subject=${id('p2')}`, ['o3']],
    ['reference :Type', `/fhir/Observation?subject:Patient=${id('p3')}`, ['o4']],
    ['reference absolute URL to this server', `/fhir/Observation?patient=${encodeURIComponent(`http://localhost:8080/fhir/Patient/${id('p1')}`)}`, ['o1', 'o2']],
    ['reference :missing', '/fhir/Patient?general-practitioner:missing=true', ['p2', 'p3']],
    ['chain', '/fhir/Observation?subject:Patient.name=muller', ['o1', 'o2', 'o3']],
    ['multi-level chain', '/fhir/Observation?subject:Patient.general-practitioner:Practitioner.name=house', ['o1', 'o2']],
    ['_has', `/fhir/Patient?_has:Observation:subject:code=8867-4`, ['p1', 'p2', 'p3']],
    ['nested _has', '/fhir/Practitioner?_has:Patient:general-practitioner:_has:Observation:subject:code=29463-7', ['pr1']],
    // uri
    ['uri _profile', `/fhir/Patient?_profile=${encodeURIComponent('http://example.org/fhir/StructureDefinition/p1-profile')}`, ['p1']],
    ['uri :below', `/fhir/Patient?_profile:below=${encodeURIComponent('http://example.org/fhir')}`, ['p1']],
    ['uri :above', `/fhir/Patient?_profile:above=${encodeURIComponent('http://example.org/fhir/StructureDefinition/p1-profile/v2')}`, ['p1']],
    // _lastUpdated, compartment, POST
    ['_lastUpdated', '/fhir/Practitioner?_lastUpdated=gt2000-01-01', ['pr1', 'pr2']],
    ['Patient compartment', `/fhir/Patient/${id('p1')}/Observation`, ['o1', 'o2']],
  ];

  it.each(cases)('%s', async (_name, path, expected) => {
    expect(await ids(path)).toEqual(expected);
  });

  it('POST _search with a form body equals GET', async () => {
    const res = await t.api.post(`/fhir/Patient/_search?${TAG_Q}`).type('form').send({ name: 'muller', gender: 'male' });
    expect(res.status).toBe(200);
    expect(res.body.entry.map((e: { resource: { id: string } }) => e.resource.id)).toEqual([id('p2')]);
  });

  it('system search over several types', async () => {
    const res = await t.api.get(`/fhir?_type=Patient,Practitioner&${TAG_Q}&_total=accurate`);
    expect(res.status).toBe(200);
    expect(res.body.total).toBe(6);
  });

  it('_sort ascending and descending, with missing values last both ways', async () => {
    const asc = await t.api.get(`/fhir/Patient?${TAG_Q}&_sort=birthdate`);
    expect(asc.body.entry.map((e: { resource: { id: string } }) => e.resource.id)).toEqual([id('p3'), id('p2'), id('p1'), id('p4')]);
    const desc = await t.api.get(`/fhir/Patient?${TAG_Q}&_sort=-birthdate,_id`);
    expect(desc.body.entry.map((e: { resource: { id: string } }) => e.resource.id)).toEqual([id('p2'), id('p1'), id('p3'), id('p4')]);
    const byName = await t.api.get(`/fhir/Patient?${TAG_Q}&_sort=family,-_id`);
    expect(byName.body.entry.map((e: { resource: { id: string } }) => e.resource.id)).toEqual([id('p4'), id('p2'), id('p1'), id('p3')]);
  });

  it('_include, _revinclude and :iterate through a reference cycle', async () => {
    const inc = await t.api.get(`/fhir/Observation?_id=${id('o1')}&_include=Observation:subject&_include=Observation:performer`);
    expect(inc.body.entry.map((e: { resource: { id: string }; search: { mode: string } }) => [e.resource.id, e.search.mode])).toEqual([
      [id('o1'), 'match'],
      [id('p1'), 'include'],
      [id('pr1'), 'include'],
    ]);
    const rev = await t.api.get(`/fhir/Patient?_id=${id('p1')}&_revinclude=Observation:subject`);
    expect(rev.body.entry.map((e: { resource: { id: string } }) => e.resource.id)).toEqual([id('p1'), id('o1'), id('o2')]);
    const cycle = await t.api.get(`/fhir/Observation?_id=${id('o3')}&_include=Observation:subject&_include:iterate=Patient:link`);
    expect(cycle.body.entry.map((e: { resource: { id: string } }) => e.resource.id)).toEqual([id('o3'), id('p2'), id('p3')]);
    const star = await t.api.get(`/fhir/Patient?_id=${id('p1')}&_include=Patient:*`);
    expect(star.body.entry.map((e: { resource: { id: string } }) => e.resource.id)).toEqual([id('p1'), id('pr1')]);
  });

  it('_summary=count, _total, _elements', async () => {
    const count = await t.api.get(`/fhir/Patient?${TAG_Q}&_summary=count`);
    expect(count.body.total).toBe(4);
    expect(count.body).not.toHaveProperty('entry'); // FHIR JSON has no empty arrays
    const elements = await t.api.get(`/fhir/Patient?${TAG_Q}&_id=${id('p1')}&_elements=gender`);
    expect(Object.keys(elements.body.entry[0].resource).sort()).toEqual(['gender', 'id', 'meta', 'resourceType']);
    const estimate = await t.api.get(`/fhir/Patient?${TAG_Q}&_total=estimate`);
    expect(typeof estimate.body.total).toBe('number');
  });

  it('unknown parameters: lenient reports them, strict rejects', async () => {
    const lenient = await t.api.get(`/fhir/Patient?${TAG_Q}&favourite-colour=blue&_id=${id('p1')}`);
    expect(lenient.status).toBe(200);
    const outcome = lenient.body.entry.find((e: { search: { mode: string } }) => e.search.mode === 'outcome');
    expect(outcome.resource.issue[0]).toEqual(expect.objectContaining({ code: 'not-supported', expression: ['favourite-colour'] }));
    const strict = await t.api.get(`/fhir/Patient?favourite-colour=blue`).set('Prefer', 'handling=strict');
    expect(strict.status).toBe(400);
    expect(strict.body.issue[0].expression).toEqual(['favourite-colour']);
  });

  it.each([
    ['/fhir/Patient?birthdate=last-tuesday', 'birthdate'],
    ['/fhir/Patient?birthdate=zz2020', 'birthdate'],
    ['/fhir/Observation?value-quantity=lots', 'value-quantity'],
    ['/fhir/Patient?_sort=shoe-size', '_sort'],
    ['/fhir/Patient?_count=many', '_count'],
    ['/fhir/Patient?name:sounds-like=x', 'name:sounds-like'],
    ['/fhir/Patient?_include=Patient:name', '_include'],
    // No type subject can refer to defines shoe-size (an untyped chain is the union over those that do).
    ['/fhir/Observation?subject.shoe-size=x', 'subject.shoe-size'],
    ['/fhir/Patient?_cursor=not-a-cursor', '_cursor'],
  ])('malformed %s is a 400 naming the parameter', async (path, param) => {
    const res = await t.api.get(path);
    expect(res.status).toBe(400);
    expect(res.body.issue[0].expression).toEqual([param]);
  });

  it('lists working search parameters in the CapabilityStatement', async () => {
    const cs = await t.api.get('/fhir/metadata');
    const patientCs = cs.body.rest[0].resource.find((r: { type: string }) => r.type === 'Patient');
    const names = patientCs.searchParam.map((p: { name: string }) => p.name);
    expect(names).toEqual(expect.arrayContaining(['name', 'birthdate', 'identifier', 'general-practitioner', '_id', '_lastUpdated', '_tag']));
    expect(names).not.toContain('_project');
    expect(patientCs.interaction.map((i: { code: string }) => i.code)).toContain('search-type');
  });
});
