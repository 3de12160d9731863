import type { Resource } from '@medplum/fhirtypes';
import { FhirDefinitions } from '../definitions/fhir-definitions';
import { TerminologyBindingValidator } from './terminology-binding.validator';

describe('TerminologyBindingValidator (required bindings)', () => {
  const validator = new TerminologyBindingValidator();
  const check = (r: Record<string, unknown>) => validator.validate(r as unknown as Resource);
  const expressions = (r: Record<string, unknown>) => check(r).map((i) => i.expression?.[0]);

  it('rejects a code outside administrative-gender and accepts one inside', () => {
    const issues = check({ resourceType: 'Patient', gender: 'x' });
    expect(issues).toEqual([
      expect.objectContaining({
        severity: 'error',
        code: 'code-invalid',
        expression: ['Patient.gender'],
        diagnostics: "Value 'x' is not in the required value set http://hl7.org/fhir/ValueSet/administrative-gender",
      }),
    ]);
    expect(check({ resourceType: 'Patient', gender: 'female' })).toEqual([]);
  });

  it('checks bindings inside data types, with array indexes in the path', () => {
    expect(
      expressions({
        resourceType: 'Patient',
        name: [{ use: 'official' }, { use: 'nope' }],
        telecom: [{ system: 'pigeon', value: '1' }],
        address: [{ use: 'home' }],
      }),
    ).toEqual(['Patient.name[1].use', 'Patient.telecom[0].system']);
  });

  it('checks status codes of clinical resources', () => {
    expect(expressions({ resourceType: 'Observation', status: 'bogus', code: { text: 'x' } })).toEqual(['Observation.status']);
    expect(check({ resourceType: 'Encounter', status: 'finished', class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' } })).toEqual([]);
    expect(expressions({ resourceType: 'Immunization', status: 'given', vaccineCode: { text: 'x' }, patient: {}, occurrenceString: 'x' })).toEqual([
      'Immunization.status',
    ]);
    expect(expressions({ resourceType: 'Bundle', type: 'pile' })).toEqual(['Bundle.type']);
  });

  it('skips value sets from external code systems (LOINC) instead of rejecting them', () => {
    expect(
      check({
        resourceType: 'Observation',
        status: 'final',
        code: { coding: [{ system: 'http://loinc.org', code: '29463-7' }] },
        valueQuantity: { value: 70, unit: 'kg', system: 'http://unitsofmeasure.org', code: 'kg', comparator: '<' },
      }),
    ).toEqual([]);
  });

  it('checks required bindings on CodeableConcept: one coding from the set is enough', () => {
    const allergy = (coding: unknown[]) => ({ resourceType: 'AllergyIntolerance', patient: {}, clinicalStatus: { coding } });
    const system = 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical';
    expect(check(allergy([{ system, code: 'active' }]))).toEqual([]);
    expect(check(allergy([{ system: 'http://other', code: 'x' }, { system, code: 'resolved' }]))).toEqual([]);
    expect(expressions(allergy([{ system, code: 'sleeping' }]))).toEqual(['AllergyIntolerance.clinicalStatus.coding[0]']);
  });

  it('checks choice elements and Quantity.comparator', () => {
    expect(
      expressions({ resourceType: 'Observation', status: 'final', code: { text: 'x' }, valueQuantity: { value: 1, comparator: '~' } }),
    ).toEqual(['Observation.valueQuantity.comparator']);
  });

  it('checks contained resources and Bundle entries by their own type', () => {
    expect(expressions({ resourceType: 'Patient', contained: [{ resourceType: 'Observation', status: 'bogus', code: { text: 'x' } }] })).toEqual([
      'Patient.contained[0].status',
    ]);
    expect(
      expressions({ resourceType: 'Bundle', type: 'collection', entry: [{ resource: { resourceType: 'Patient', gender: 'robot' } }] }),
    ).toEqual(['Bundle.entry[0].resource.gender']);
  });

  it('handles nested backbone elements and content references (Questionnaire.item.item)', () => {
    expect(
      expressions({
        resourceType: 'Questionnaire',
        status: 'active',
        item: [{ linkId: '1', type: 'group', item: [{ linkId: '1.1', type: 'teleport' }] }],
      }),
    ).toEqual(['Questionnaire.item[0].item[0].type']);
  });

  it('accepts an empty instance of every storable type without throwing', () => {
    const types = FhirDefinitions.get().storableTypes;
    expect(types).toHaveLength(144);
    for (const resourceType of types) expect(check({ resourceType })).toEqual([]);
  });
});
