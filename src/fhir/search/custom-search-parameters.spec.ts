import type { SearchParameter } from '@medplum/fhirtypes';
import type { FhirError } from '../../common/fhir-error';
import { buildCustomSearchParams, loadShippedSearchParameters, searchParameterProblem } from './custom-search-parameters';
import { r4SearchParamsOf, searchParamsOf, setCustomSearchParams } from './search-parameter.registry';

function sp(id: string, extra: Partial<SearchParameter> = {}): SearchParameter {
  return {
    resourceType: 'SearchParameter',
    id,
    url: `http://example.org/SearchParameter/${id}`,
    name: id,
    status: 'active',
    description: id,
    code: id,
    base: ['Patient'],
    type: 'token',
    expression: 'Patient.identifier.value',
    ...extra,
  } as SearchParameter;
}

describe('custom search parameter layer', () => {
  afterEach(() => setCustomSearchParams(new Map()));

  it('ships the regional person-id parameter for Patient, the code-effective composite for Observation, the Coverage period, the home-address parts and the referral references', () => {
    const shipped = loadShippedSearchParameters();
    expect(shipped.map((s) => [s.id, s.code, s.base, s.type])).toEqual([
      ['hie-coverage-period', 'period', ['Coverage'], 'date'],
      ['hie-observation-code-effective', 'code-effective', ['Observation'], 'composite'],
      ['hie-patient-home-district-period', 'home-district-period', ['Patient'], 'composite'],
      ['hie-patient-home-district', 'home-district', ['Patient'], 'token'],
      ['hie-patient-home-period', 'home-period', ['Patient'], 'date'],
      ['hie-patient-home-postalcode-period', 'home-postalcode-period', ['Patient'], 'composite'],
      ['hie-patient-home-postalcode', 'home-postalcode', ['Patient'], 'token'],
      ['hie-patient-home-state-period', 'home-state-period', ['Patient'], 'composite'],
      ['hie-patient-home-state', 'home-state', ['Patient'], 'token'],
      ['hie-patient-person-id', 'person-id', ['Patient'], 'token'],
      ['hie-servicerequest-supporting-info', 'supporting-info', ['ServiceRequest'], 'reference'],
      ['hie-task-output-reference', 'output-reference', ['Task'], 'reference'],
    ]);
    // The home-address composites name the shipped parts as their components.
    expect(shipped.map((s) => searchParameterProblem(s, shipped.filter((o) => o !== s)))).toEqual(shipped.map(() => undefined));
    const layer = buildCustomSearchParams(shipped, [], () => undefined);
    expect(layer.get('Observation')!.get('code-effective')).toEqual({
      code: 'code-effective',
      type: 'composite',
      expression: 'Observation',
      targets: [],
      url: 'http://hie.example.org/fhir/SearchParameter/hie-observation-code-effective',
      components: [
        { type: 'token', expression: 'code' },
        { type: 'date', expression: 'effective' },
      ],
    });
    // The statistics' region: a home address's part (exact, a token) with its period's bounds.
    expect(layer.get('Patient')!.get('home-district-period')!.components).toEqual([
      { type: 'token', expression: 'district' },
      { type: 'date', expression: "iif(period.start.exists(), period.start, '1000')" },
      { type: 'date', expression: "iif(period.end.exists(), period.end, '9000')" },
    ]);
  });

  it('a composite may name a custom component stored after it; one naming an unknown parameter is skipped', () => {
    const component = (definition: string, expression: string) => ({ definition, expression });
    const skipped: [string, string, string[] | undefined][] = [];
    const layer = buildCustomSearchParams(
      [],
      [
        sp('a-composite', {
          code: 'pair',
          type: 'composite',
          base: ['Observation'],
          expression: 'Observation.component',
          component: [component('http://hl7.org/fhir/SearchParameter/clinical-code', 'code'), component('http://example.org/SearchParameter/z-interp', 'interpretation')],
        }),
        sp('b-broken', {
          code: 'broken',
          type: 'composite',
          base: ['Observation'],
          expression: 'Observation',
          component: [component('http://hl7.org/fhir/SearchParameter/clinical-code', 'code'), component('http://example.org/SearchParameter/nothing', 'status')],
        }),
        sp('z-interp', { code: 'interp', base: ['Observation'], expression: 'Observation.component.interpretation' }),
      ],
      (s, problem: FhirError) => skipped.push([s.id!, problem.issues[0].code, problem.issues[0].expression]),
    );
    expect(skipped).toEqual([['b-broken', 'not-supported', ['SearchParameter.component[1].definition']]]);
    expect(layer.get('Observation')!.get('pair')?.components).toEqual([
      { type: 'token', expression: 'code' },
      { type: 'token', expression: 'interpretation' },
    ]);
  });

  it('builds shipped then stored parameters, skipping (and reporting) clashes and ignoring inactive ones', () => {
    const skipped: [string, string][] = [];
    const layer = buildCustomSearchParams(
      [sp('regional', { base: ['Patient', 'Practitioner'], expression: 'Patient.identifier.value | Practitioner.identifier.value' })],
      [sp('a-clash', { code: 'regional' }), sp('b-draft', { status: 'draft', expression: '(((' }), sp('c-ok', { code: 'other', type: 'string' })],
      (s, problem: FhirError) => skipped.push([s.id!, problem.issues[0].code]),
    );
    expect(skipped).toEqual([['a-clash', 'duplicate']]);
    expect([...layer.keys()].sort()).toEqual(['Patient', 'Practitioner']);
    expect([...layer.get('Patient')!.keys()]).toEqual(['regional', 'other']);
    // Each base keeps its own branch of a union expression, as R4's shared parameters do.
    expect(layer.get('Practitioner')!.get('regional')).toEqual({
      code: 'regional',
      type: 'token',
      expression: 'Practitioner.identifier.value',
      targets: [],
      url: 'http://example.org/SearchParameter/regional',
    });
  });

  it('searchParamsOf answers R4 plus the layer in force, and forgets a replaced layer', () => {
    const r4Count = r4SearchParamsOf('Patient').size;
    setCustomSearchParams(buildCustomSearchParams([], [sp('extra')], () => undefined));
    expect(searchParamsOf('Patient').get('extra')?.expression).toBe('Patient.identifier.value');
    expect(searchParamsOf('Patient').size).toBe(r4Count + 1);
    expect(searchParamsOf('Observation').has('extra')).toBe(false);
    setCustomSearchParams(new Map());
    expect(searchParamsOf('Patient').has('extra')).toBe(false);
    expect(searchParamsOf('Patient').size).toBe(r4Count);
  });

  it.each([
    ['R4 code', sp('x', { code: 'birthdate' }), 'business-rule'],
    ['reserved code', sp('x', { code: '_x' }), 'value'],
    ['special type', sp('x', { type: 'special' }), 'not-supported'],
    ['composite without components', sp('x', { type: 'composite' }), 'not-supported'],
    ['composite with an unparseable component expression', sp('x', { type: 'composite', component: [
      { definition: 'http://hl7.org/fhir/SearchParameter/individual-gender', expression: 'gender' },
      { definition: 'http://hl7.org/fhir/SearchParameter/individual-birthdate', expression: 'birthDate.where(' },
    ] }), 'invalid'],
    ['unparseable expression', sp('x', { expression: 'Patient.name.where(' }), 'invalid'],
    ['unknown function', sp('x', { expression: 'Patient.name.frobnicate()' }), 'invalid'],
    ['non-storable base', sp('x', { base: ['Parameters'] }), 'not-supported'],
  ])('refuses %s', (_what, param, code) => {
    expect(searchParameterProblem(param, [])?.issues[0].code).toBe(code);
  });
});
