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

  it('ships the regional person-id parameter for Patient', () => {
    const shipped = loadShippedSearchParameters();
    expect(shipped.map((s) => [s.id, s.code, s.base, s.type])).toEqual([['hie-patient-person-id', 'person-id', ['Patient'], 'token']]);
    expect(searchParameterProblem(shipped[0], [])).toBeUndefined();
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
    ['unparseable expression', sp('x', { expression: 'Patient.name.where(' }), 'invalid'],
    ['unknown function', sp('x', { expression: 'Patient.name.frobnicate()' }), 'invalid'],
    ['non-storable base', sp('x', { base: ['Parameters'] }), 'not-supported'],
  ])('refuses %s', (_what, param, code) => {
    expect(searchParameterProblem(param, [])?.issues[0].code).toBe(code);
  });
});
