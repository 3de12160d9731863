import type { Resource } from '@medplum/fhirtypes';
import { AGE_90_OR_OLDER, deidentify, referencesOf } from './bulk-export.deidentify';

const pseudonyms = new Map([
  ['Patient/p1', 'aaaaaaaa-0000-4000-8000-000000000001'],
  ['Practitioner/d1', 'aaaaaaaa-0000-4000-8000-000000000002'],
  ['Condition/c1', 'aaaaaaaa-0000-4000-8000-000000000003'],
]);
const options = { pseudonyms, zip3Allowed: new Set(['021']), currentYear: 2026 };

describe('Safe Harbor de-identification of one resource', () => {
  it('drops names, telecom, photos, identifiers, narrative, contacts and meta.source; keeps the year; generalizes the address', () => {
    const patient = {
      resourceType: 'Patient',
      id: 'p1',
      meta: { versionId: '3', lastUpdated: '2026-03-04T05:06:07.890Z', source: 'hospital-a', security: [{ system: 's', code: 'R' }] },
      text: { status: 'generated', div: '<div>Anna Smith</div>' },
      identifier: [{ system: 'mrn', value: 'MRN-1' }],
      name: [{ family: 'Smith', given: ['Anna'] }],
      telecom: [{ system: 'phone', value: '555-0101' }],
      photo: [{ data: 'AAAA' }],
      contact: [{ name: { family: 'Smith' } }],
      gender: 'female',
      birthDate: '1980-07-09',
      address: [{ line: ['1 Main St'], city: 'Boston', district: 'Suffolk', state: 'MA', postalCode: '02134', country: 'US' }, { line: ['2 Elm'], state: 'NY', postalCode: '10001' }],
      generalPractitioner: [{ reference: 'Practitioner/d1', display: 'Dr. Who' }],
      extension: [
        { url: 'http://example.org/nickname', valueString: 'Annie' },
        { url: 'http://example.org/flag', valueBoolean: true },
      ],
    } as unknown as Resource;
    expect(deidentify(patient, options)).toEqual({
      resourceType: 'Patient',
      id: 'aaaaaaaa-0000-4000-8000-000000000001',
      meta: { security: [{ system: 's', code: 'R' }] },
      gender: 'female',
      birthDate: '1980',
      address: [{ state: 'MA', country: 'US', postalCode: '021' }, { state: 'NY' }],
      generalPractitioner: [{ reference: 'Practitioner/aaaaaaaa-0000-4000-8000-000000000002' }],
      extension: [{ url: 'http://example.org/flag', valueBoolean: true }],
    });
  });

  it('folds a birth date of someone over 89 and Ages over 89 into the 90-or-older category', () => {
    const old = deidentify({ resourceType: 'Patient', id: 'p1', birthDate: '1930-01-01' } as Resource, options);
    expect(old).toEqual({ resourceType: 'Patient', id: pseudonyms.get('Patient/p1'), _birthDate: { extension: [{ url: AGE_90_OR_OLDER, valueBoolean: true }] } });
    const condition = {
      resourceType: 'Condition',
      id: 'c1',
      subject: { reference: 'Patient/p1/_history/2' },
      onsetAge: { value: 93, unit: 'years', system: 'http://unitsofmeasure.org', code: 'a' },
      recordedDate: '2020-05-06',
      note: [{ text: 'lives at 1 Main St' }],
      code: { coding: [{ system: 'http://snomed.info/sct', code: '44054006', display: 'Diabetes mellitus type 2' }], text: 'sugar' },
      asserter: { reference: 'https://other.example.org/fhir/Practitioner/9' },
    } as unknown as Resource;
    expect(deidentify(condition, options)).toEqual({
      resourceType: 'Condition',
      id: pseudonyms.get('Condition/c1'),
      subject: { reference: `Patient/${pseudonyms.get('Patient/p1')}` },
      onsetAge: { value: 90, comparator: '>=', unit: 'a', system: 'http://unitsofmeasure.org', code: 'a' },
      recordedDate: '2020',
      code: { coding: [{ system: 'http://snomed.info/sct', code: '44054006', display: 'Diabetes mellitus type 2' }] },
    });
  });

  it('lists the resource itself and every relative reference for the pseudonym look-up', () => {
    const r = { resourceType: 'Condition', id: 'c1', subject: { reference: 'Patient/p1/_history/2' }, asserter: { reference: 'https://x/Practitioner/9' }, evidence: [{ detail: [{ reference: 'Practitioner/d1' }] }] };
    expect(referencesOf(r as unknown as Resource).sort()).toEqual(['Condition/c1', 'Patient/p1', 'Practitioner/d1']);
  });
});
