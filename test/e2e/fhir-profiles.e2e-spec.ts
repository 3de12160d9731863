import { postTransaction } from '../support/bundles';
import { FHIR_JSON, hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

const HIE_PATIENT = 'http://hie.example.org/fhir/StructureDefinition/hie-patient';

/**
 * Profiles are parsed once, at load (issue 23, docs/performance.md): the answers to profile failures
 * stay exactly what they were when @medplum/core parsed the profile per validation, and the
 * profile's URL, under which its parsed schema is validated, never becomes a resource type.
 */
describe('HIE profiles on write (parsed once)', () => {
  let t: TestApp;

  const patients = async (): Promise<number> => (await t.db.query(`SELECT count(*)::int AS n FROM resource WHERE resource_type = 'Patient'`))[0].n;

  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t.close());

  it('answers a Patient outside hie-patient with the same 422 issues, storing nothing', async () => {
    const before = await patients();
    const res = await t.api
      .post('/fhir/Patient')
      .set('Content-Type', FHIR_JSON)
      .send(hiePatient({ identifier: [{ value: 'no-system' }, { system: 'http://hospital-a.example.org/mrn' }], name: undefined, gender: undefined }));
    expect(res.status).toBe(422);
    const missing = (expression: string) => ({
      severity: 'error',
      code: 'structure',
      details: { text: 'Missing required property' },
      diagnostics: `Missing required property (profile ${HIE_PATIENT})`,
      expression: [expression],
    });
    expect(res.body).toEqual({
      resourceType: 'OperationOutcome',
      issue: [missing('Patient.identifier[0].system'), missing('Patient.identifier[1].value'), missing('Patient.name'), missing('Patient.gender')],
    });
    expect(await patients()).toBe(before);
  });

  it('refuses, as before, a resource whose resourceType is a profile URL, wherever it is', async () => {
    const before = await patients();
    const claimed = { ...hiePatient(), resourceType: HIE_PATIENT };
    const direct = await t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(claimed);
    const contained = await t.api
      .post('/fhir/Patient')
      .set('Content-Type', FHIR_JSON)
      .send(hiePatient({ contained: [{ ...claimed, id: 'c1' }], generalPractitioner: [{ reference: '#c1' }] }));
    const entry = await postTransaction(t.api, [{ fullUrl: 'urn:uuid:7f1c6b1e-0d5a-4b1e-9f3a-1c2d3e4f5a6b', resource: claimed, request: { method: 'POST', url: 'Patient' } }]);
    const inStoredBundle = await t.api.post('/fhir/Bundle').set('Content-Type', FHIR_JSON).send({ resourceType: 'Bundle', type: 'collection', entry: [{ resource: claimed }] });
    const unknown = { severity: 'error', code: 'invalid', details: { text: `Unknown data type: ${HIE_PATIENT}` }, diagnostics: `Unknown data type: ${HIE_PATIENT}` };
    expect([direct.status, direct.body.issue]).toEqual([
      400,
      [{ severity: 'error', code: 'invalid', diagnostics: `resourceType '${HIE_PATIENT}' does not match the type in the URL (Patient)`, expression: ['resourceType'] }],
    ]);
    expect([contained.status, contained.body.issue]).toEqual([400, [unknown]]);
    expect([inStoredBundle.status, inStoredBundle.body.issue]).toEqual([400, [unknown]]);
    expect([entry.status, entry.body.issue]).toEqual([
      400,
      [
        {
          severity: 'error',
          code: 'invalid',
          diagnostics: `Bundle.entry[0]: resourceType '${HIE_PATIENT}' does not match the type in the URL (Patient)`,
          expression: ['Bundle.entry[0].resource.resourceType', 'Bundle.entry[0]'],
        },
      ],
    ]);
    expect(await t.db.query(`SELECT count(*)::int AS n FROM resource WHERE resource_type = 'Bundle'`)).toEqual([{ n: 0 }]);
    expect(await patients()).toBe(before);
  });
});
