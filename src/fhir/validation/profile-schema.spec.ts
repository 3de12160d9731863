import { getAllDataTypes, getResourceTypes, isResourceType, OperationOutcomeError, validateResource } from '@medplum/core';
import type { OperationOutcomeIssue, Patient, Resource } from '@medplum/fhirtypes';
import { buildMinimalInstance } from '../../synthetic/minimal-instance.builder';
import { SyntheticDataGenerator } from '../../synthetic/synthetic-data.generator';
import { ProfileRegistry } from './profile.registry';
import { ResourceValidator } from './resource.validator';

const HIE_PATIENT = 'http://hie.example.org/fhir/StructureDefinition/hie-patient';

/** What a validation answers: its issues, or those of the OperationOutcomeError it throws (errors). */
function outcome(run: () => OperationOutcomeIssue[]): { thrown: boolean; issues: OperationOutcomeIssue[] } {
  try {
    return { thrown: false, issues: run() };
  } catch (err) {
    if (err instanceof OperationOutcomeError) return { thrown: true, issues: err.outcome.issue };
    throw err;
  }
}

function patient(n: number, extra: Partial<Patient> = {}): Patient {
  return {
    resourceType: 'Patient',
    identifier: [{ system: 'http://hospital.example.org/mrn', value: `mrn-${n}` }],
    name: [{ family: `Family${n}`, given: ['Given'] }],
    gender: 'female',
    birthDate: '1980-02-03',
    ...extra,
  };
}

/** Base-valid resources of the profiles' types, valid and invalid against them, in the shapes the profiles constrain. */
function corpus(): Resource[] {
  const generated = [...new SyntheticDataGenerator({ seed: 23, patients: 4 }).resources()];
  const ofProfiledTypes = generated.filter((r) => ['Patient', 'Consent', 'ServiceRequest', 'Task'].includes(r.resourceType));
  const minimal = ['Patient', 'Consent', 'ServiceRequest', 'Task'].flatMap((type) => [buildMinimalInstance(type, 0), buildMinimalInstance(type, 1)]);
  const patients: Patient[] = [
    patient(1),
    patient(2, { identifier: [{ value: 'no-system' }] }),
    patient(3, { identifier: [{ system: 'http://hospital.example.org/mrn' }, { system: 'http://x.example.org', value: 'v' }] }),
    patient(4, { name: undefined, gender: undefined }),
    patient(5, { identifier: undefined, deceasedDateTime: '2020-01-01', multipleBirthInteger: 2 }),
    patient(6, {
      contact: [{ name: { family: 'Contact' }, relationship: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0131', code: 'N' }] }] }],
      link: [{ other: { reference: 'Patient/other' }, type: 'seealso' }],
      communication: [{ language: { coding: [{ system: 'urn:ietf:bcp:47', code: 'en' }] } }],
    }),
    patient(7, {
      contained: [{ resourceType: 'Organization', id: 'gp', name: 'Practice' }],
      generalPractitioner: [{ reference: '#gp' }],
      _birthDate: { extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/patient-birthTime', valueDateTime: '1980-02-03T04:05:06Z' }] },
    } as Partial<Patient>),
    patient(8, { identifier: [], gender: undefined, deceasedBoolean: false }),
  ];
  const referrals: Resource[] = [
    {
      resourceType: 'ServiceRequest',
      status: 'active',
      intent: 'order',
      priority: 'routine',
      subject: { reference: 'Patient/p1' },
      requester: { reference: 'Organization/a' },
      performer: [{ reference: 'Organization/b' }, { reference: 'Organization/c' }],
      reasonCode: [{ text: 'reason' }],
    },
    { resourceType: 'ServiceRequest', status: 'active', intent: 'order', subject: { reference: 'Patient/p1' }, performer: [{ reference: 'Organization/b' }] },
    { resourceType: 'Task', status: 'requested', intent: 'order', focus: { reference: 'ServiceRequest/s' }, for: { reference: 'Patient/p1' }, authoredOn: '2026-01-02', requester: { reference: 'Organization/a' }, owner: { reference: 'Organization/b' } },
    { resourceType: 'Task', status: 'requested', intent: 'order', owner: { reference: 'Organization/b' }, lastModified: '2020-01-01', authoredOn: '2021-01-01' },
    { resourceType: 'Consent', status: 'active', scope: { text: 's' }, category: [{ text: 'c' }], policyRule: { text: 'p' } },
  ];
  return [...ofProfiledTypes, ...minimal, ...patients, ...referrals];
}

describe('ProfileSchema (profiles parsed once, issue 23)', () => {
  const registry = new ProfileRegistry();
  const profiles = registry.all().map((sd) => ({ sd, schema: registry.schema(sd.url)! }));

  it('answers exactly what validateResource(resource, { profile }) answers, valid and invalid, for every shipped profile', () => {
    const resources = corpus();
    let refused = 0;
    let compared = 0;
    for (const { sd, schema } of profiles) {
      for (const resource of resources.filter((r) => r.resourceType === sd.type)) {
        const expected = outcome(() => validateResource(resource, { profile: sd }));
        expect({ url: sd.url, resource, ...outcome(() => schema.validate(resource)) }).toEqual({ url: sd.url, resource, ...expected });
        if (expected.thrown) refused++;
        compared++;
      }
    }
    // Not vacuous: both outcomes are well represented.
    expect(compared).toBeGreaterThanOrEqual(20);
    expect(refused).toBeGreaterThanOrEqual(10);
    expect(compared - refused).toBeGreaterThanOrEqual(5);
  });

  it('answers as validateResource does for a resource of another type than the profile ($validate?profile=)', () => {
    const { sd, schema } = profiles.find((p) => p.sd.url === HIE_PATIENT)!;
    for (const resource of [buildMinimalInstance('Observation', 0), buildMinimalInstance('Bundle', 1)]) {
      expect(outcome(() => schema.validate(resource))).toEqual(outcome(() => validateResource(resource, { profile: sd })));
    }
  });

  it('leaves no new resource or data type behind, whether the validation passes or throws', () => {
    const types = getResourceTypes().length;
    const schema = registry.schema(HIE_PATIENT)!;
    expect(outcome(() => schema.validate(patient(1))).thrown).toBe(false);
    expect(outcome(() => schema.validate(patient(2, { gender: undefined }))).thrown).toBe(true);
    expect(Boolean(isResourceType(HIE_PATIENT))).toBe(false);
    expect(Object.hasOwn(getAllDataTypes(), HIE_PATIENT)).toBe(false);
    expect(getResourceTypes()).toHaveLength(types);
  });

  it('refuses to shadow a data type of the same name', () => {
    const dataTypes = getAllDataTypes();
    dataTypes[HIE_PATIENT] = dataTypes.Patient;
    try {
      expect(() => registry.schema(HIE_PATIENT)!.validate(patient(1))).toThrow(`Profile ${HIE_PATIENT}: a data type of that name is already loaded`);
      expect(dataTypes[HIE_PATIENT]).toBe(dataTypes.Patient);
    } finally {
      Reflect.deleteProperty(dataTypes, HIE_PATIENT);
    }
  });
});

describe('ResourceValidator with the HIE profiles', () => {
  it('reads a profile StructureDefinition at load only, not once per validation', () => {
    const validator = new ResourceValidator();
    const sd = validator.profileRegistry().get(HIE_PATIENT)!;
    const snapshot = sd.snapshot;
    let reads = 0;
    // Parsing a StructureDefinition reads its snapshot: the old code parsed the profile per validation.
    Object.defineProperty(sd, 'snapshot', {
      get: () => {
        reads++;
        return snapshot;
      },
    });
    for (let n = 0; n < 5; n++) validator.validate(patient(n));
    for (let n = 0; n < 5; n++) expect(validator.issues(patient(n, { name: undefined })).profile).toHaveLength(1);
    expect(reads).toBe(0);
  });

  it('keeps refusing, as base errors, a contained resource that claims a profile URL as its resourceType', () => {
    const validator = new ResourceValidator();
    const claimed = patient(9, { contained: [{ resourceType: HIE_PATIENT, id: 'x' } as unknown as Resource], generalPractitioner: [{ reference: '#x' }] });
    const { base, profile } = validator.issues(claimed);
    expect(base).toEqual([expect.objectContaining({ severity: 'error', code: 'invalid', diagnostics: `Unknown data type: ${HIE_PATIENT}` })]);
    expect(profile).toEqual([]);
  });
});
