import request from 'supertest';
import { registerTestClient } from '../support/auth';
import { FHIR_JSON, hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

type Agent = TestApp['api'];

/**
 * Chains without a type modifier over references that may point at several types
 * (`Observation?subject.name=soila`, R4's `DiagnosticReport?subject.name=peter`): the union of the
 * typed chains into every target type that defines the chained parameter, each under the client's
 * access to that type.
 */
describe('untyped chains over multi-type references', () => {
  let t: TestApp;
  const ids: Record<string, string> = {};

  const matches = async (agent: Agent, query: string): Promise<string[]> => {
    const res = await agent.get(`/fhir/Observation?${query}`);
    expect({ query, status: res.status, issue: res.body.issue }).toEqual({ query, status: 200, issue: undefined });
    return (res.body.entry ?? []).map((e: { resource: { id: string } }) => e.resource.id).sort();
  };
  const names = (...keys: string[]): string[] => keys.map((k) => ids[k]).sort();

  beforeAll(async () => {
    t = await createTestApp();
    const create = async (body: Record<string, unknown>): Promise<string> => {
      const res = await t.api.post(`/fhir/${String(body.resourceType)}`).set('Content-Type', FHIR_JSON).send(body);
      expect(res.status).toBe(201);
      return res.body.id as string;
    };
    ids.acme = await create({ resourceType: 'Organization', name: 'Acme Health' });
    ids.other = await create({ resourceType: 'Organization', name: 'Elsewhere Clinic' });
    ids.patient = await create(hiePatient({ name: [{ family: 'Soila', given: ['Ann'] }], gender: 'female', managingOrganization: { reference: `Organization/${ids.acme}` } }));
    ids.patientMale = await create(hiePatient({ name: [{ family: 'Soila', given: ['Bo'] }], gender: 'male' }));
    ids.patientOther = await create(hiePatient({ name: [{ family: 'Peters' }], managingOrganization: { reference: `Organization/${ids.other}` } }));
    ids.group = await create({ resourceType: 'Group', type: 'person', actual: true, name: 'Soila cohort', identifier: [{ system: 'urn:untyped', value: 'shared' }] });
    ids.groupOther = await create({ resourceType: 'Group', type: 'person', actual: true, name: 'Peters cohort' });
    ids.location = await create({ resourceType: 'Location', name: 'Soila ward', managingOrganization: { reference: `Organization/${ids.acme}` } });
    ids.device = await create({
      resourceType: 'Device',
      deviceName: [{ name: 'Soila pump', type: 'user-friendly-name' }],
      owner: { reference: `Organization/${ids.other}` },
      identifier: [{ system: 'urn:untyped', value: 'shared' }],
    });
    const observation = (subject: string) => create({ resourceType: 'Observation', status: 'final', code: { text: 'weight' }, subject: { reference: subject } });
    ids.obsPatient = await observation(`Patient/${ids.patient}`);
    ids.obsPatientMale = await observation(`Patient/${ids.patientMale}`);
    ids.obsPatientOther = await observation(`Patient/${ids.patientOther}`);
    ids.obsGroup = await observation(`Group/${ids.group}`);
    ids.obsGroupOther = await observation(`Group/${ids.groupOther}`);
    ids.obsLocation = await observation(`Location/${ids.location}`);
    ids.obsDevice = await observation(`Device/${ids.device}`);
  }, 60_000);
  afterAll(() => t.close());

  it('subject.name matches through Patient and Location, equal to the union of the typed chains', async () => {
    const untyped = await matches(t.api, 'subject.name=soila');
    expect(untyped).toEqual(names('obsPatient', 'obsPatientMale', 'obsLocation'));
    const typed = [...(await matches(t.api, 'subject:Patient.name=soila')), ...(await matches(t.api, 'subject:Location.name=soila'))].sort();
    expect(untyped).toEqual(typed);
    // R4 defines `name` on neither Group nor Device (device-name): their Observations are not matches.
    expect(untyped).not.toContain(ids.obsGroup);
    expect(untyped).not.toContain(ids.obsDevice);
  });

  it('subject.identifier matches through Group and Device as well (every target type defines identifier)', async () => {
    const untyped = await matches(t.api, 'subject.identifier=urn:untyped|shared');
    expect(untyped).toEqual(names('obsGroup', 'obsDevice'));
    const typed = [
      ...(await matches(t.api, 'subject:Group.identifier=urn:untyped|shared')),
      ...(await matches(t.api, 'subject:Device.identifier=urn:untyped|shared')),
      ...(await matches(t.api, 'subject:Patient.identifier=urn:untyped|shared')),
      ...(await matches(t.api, 'subject:Location.identifier=urn:untyped|shared')),
    ].sort();
    expect(untyped).toEqual(typed);
  });

  it('nested untyped chains: subject.organization.name through Patient and Location (and Device: owner is its organization)', async () => {
    const untyped = await matches(t.api, 'subject.organization.name=acme');
    expect(untyped).toEqual(names('obsPatient', 'obsLocation'));
    const typed = [
      ...(await matches(t.api, 'subject:Patient.organization.name=acme')),
      ...(await matches(t.api, 'subject:Location.organization.name=acme')),
      ...(await matches(t.api, 'subject:Device.organization.name=acme')),
    ].sort();
    expect(untyped).toEqual(typed);
    expect(await matches(t.api, 'subject.organization.name=elsewhere')).toEqual(names('obsPatientOther', 'obsDevice'));
  });

  it('400 naming the chain when no target type defines the parameter', async () => {
    const res = await t.api.get('/fhir/Observation?subject.colour=red');
    expect(res.status).toBe(400);
    expect(res.body.issue).toEqual([
      {
        severity: 'error',
        code: 'invalid',
        diagnostics: "Unknown search parameter 'colour' in chain: none of the types subject can refer to (Group, Device, Patient, Location) defines it",
        expression: ['subject.colour'],
      },
    ]);
  });

  it('under a scope query limited to Patient: Location (not granted) is left out, the Patient restriction applies', async () => {
    const client = await registerTestClient(t, { role: 'hospital', scopes: ['system/Observation.rs', 'system/Patient.rs?gender=female'] });
    const scoped = request.agent(t.http).set('Authorization', `Bearer ${await client.token()}`);
    expect(await matches(scoped, 'subject.name=soila')).toEqual(names('obsPatient'));
    expect(await matches(scoped, 'subject:Patient.name=soila')).toEqual(names('obsPatient'));
    // A typed chain into a type the client may not read is refused, as before.
    expect((await scoped.get('/fhir/Observation?subject:Location.name=soila')).status).toBe(403);
    // The unrestricted client sees the male Patient's and the Location's Observations: the data is there, the scope hides it.
    expect(await matches(t.api, 'subject.name=soila')).toEqual(names('obsPatient', 'obsPatientMale', 'obsLocation'));
  });

  it('403 when the client may read none of the target types that define the parameter', async () => {
    const client = await registerTestClient(t, { role: 'hospital', scopes: ['system/Observation.rs', 'system/Device.rs'] });
    const res = await request(t.http).get('/fhir/Observation?subject.name=soila').set('Authorization', `Bearer ${await client.token()}`);
    expect(res.status).toBe(403);
    expect(res.body.issue).toEqual([
      { severity: 'error', code: 'forbidden', diagnostics: 'Chaining into Patient, Location is not allowed for this client' },
    ]);
  });
});
