import request from 'supertest';
import { registerTestClient } from '../support/auth';
import { FHIR_JSON } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

type Agent = TestApp['api'];

const LOINC = 'http://loinc.org';
const INTERPRETATION = 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation';
const PAIR_URL = 'http://hie.example.org/fhir/SearchParameter/component-code-interpretation';
const INTERP_URL = 'http://hie.example.org/fhir/SearchParameter/component-interpretation';

/** Custom composite SearchParameters: shipped (fhir-profiles/) and stored by an admin, searched, reindexed, advertised. */
describe('custom composite SearchParameters', () => {
  let t: TestApp;
  let admin: Agent;
  const ids: Record<string, string> = {};

  const create = async (agent: Agent, body: Record<string, unknown>): Promise<request.Response> =>
    agent.post(`/fhir/${String(body.resourceType)}`).set('Content-Type', FHIR_JSON).send(body);
  const matches = async (query: string): Promise<string[]> => {
    const res = await t.api.get(`/fhir/Observation?${query}`);
    expect({ query, status: res.status, issue: res.body.issue }).toEqual({ query, status: 200, issue: undefined });
    return (res.body.entry ?? []).map((e: { resource: { id: string } }) => e.resource.id).sort();
  };
  const names = (...keys: string[]): string[] => keys.map((k) => ids[k]).sort();
  const observation = (code: string, effective: string, components: [string, string][] = []) => ({
    resourceType: 'Observation',
    status: 'final',
    code: { coding: [{ system: LOINC, code }] },
    effectiveDateTime: effective,
    component: components.map(([c, interpretation]) => ({
      code: { coding: [{ system: LOINC, code: c }] },
      valueQuantity: { value: 120, unit: 'mm[Hg]', system: 'http://unitsofmeasure.org', code: 'mm[Hg]' },
      interpretation: [{ coding: [{ system: INTERPRETATION, code: interpretation }] }],
    })),
  });
  const created = async (key: string, body: Record<string, unknown>): Promise<void> => {
    const res = await create(t.api, body);
    expect(res.status).toBe(201);
    ids[key] = res.body.id;
  };

  beforeAll(async () => {
    t = await createTestApp();
    const client = await registerTestClient(t, { role: 'admin', scopes: ['system/SearchParameter.cruds'], purposes: ['HSYSADMIN'] });
    admin = request.agent(t.http).set('Authorization', `Bearer ${await client.token()}`);
    await created('hba1c2024', observation('4548-4', '2024-03-01'));
    await created('hba1c2023', observation('4548-4', '2023-05-01'));
    await created('glucose2024', observation('2345-7', '2024-03-01'));
  }, 60_000);
  afterAll(() => t.close());

  it('the shipped code-effective composite pairs the code with the effective time of the same Observation', async () => {
    expect(await matches(`code-effective=${LOINC}|4548-4$ge2024-01-01`)).toEqual(names('hba1c2024'));
    expect(await matches(`code-effective=${LOINC}|4548-4$2023`)).toEqual(names('hba1c2023'));
    expect(await matches(`code-effective=2345-7$lt2024-01-01`)).toEqual([]);
    expect(await matches(`code-effective:missing=false&code=4548-4`)).toEqual(names('hba1c2023', 'hba1c2024'));
    const bad = await t.api.get(`/fhir/Observation?code-effective=${LOINC}|4548-4`);
    expect(bad.status).toBe(400);
    expect(bad.body.issue[0].diagnostics).toBe(`code-effective: '${LOINC}|4548-4' must have 2 parts separated by $ (token$date)`);
  });

  it('a composite stored by an admin over a stored component: search, $reindex of earlier data, CapabilityStatement', async () => {
    // Written before the parameters exist: systolic high, diastolic normal.
    await created('before', observation('85354-9', '2024-02-01', [['8480-6', 'H'], ['8462-4', 'N']]));
    const interp = await create(admin, {
      resourceType: 'SearchParameter',
      url: INTERP_URL,
      name: 'ComponentInterpretation',
      status: 'active',
      description: 'interpretation of an Observation component',
      code: 'component-interpretation',
      base: ['Observation'],
      type: 'token',
      expression: 'Observation.component.interpretation',
    });
    expect({ status: interp.status, issue: interp.body.issue }).toEqual({ status: 201, issue: undefined });
    const pair = await create(admin, {
      resourceType: 'SearchParameter',
      url: PAIR_URL,
      name: 'ComponentCodeInterpretation',
      status: 'active',
      description: 'a component code with its own interpretation',
      code: 'component-code-interpretation',
      base: ['Observation'],
      type: 'composite',
      expression: 'Observation.component',
      component: [
        { definition: 'http://hl7.org/fhir/SearchParameter/clinical-code', expression: 'code' },
        { definition: INTERP_URL, expression: 'interpretation' },
      ],
    });
    expect({ status: pair.status, issue: pair.body.issue }).toEqual({ status: 201, issue: undefined });
    // Written after: systolic normal, diastolic high.
    await created('after', observation('85354-9', '2024-02-02', [['8480-6', 'N'], ['8462-4', 'H']]));

    expect(await matches(`component-code-interpretation=${LOINC}|8462-4$${INTERPRETATION}|H`)).toEqual(names('after'));
    // The earlier Observation has no index rows for the new parameter until $reindex.
    expect(await matches(`component-code-interpretation=${LOINC}|8480-6$H`)).toEqual([]);
    const reindex = await admin.post('/fhir/Observation/$reindex').set('Content-Type', FHIR_JSON).send({});
    expect(reindex.status).toBe(200);
    expect(reindex.body.parameter).toEqual([
      { name: 'processed', valueInteger: 5 },
      { name: 'complete', valueBoolean: true },
    ]);
    // A code pairs only with its own component's interpretation.
    expect(await matches(`component-code-interpretation=${LOINC}|8480-6$H`)).toEqual(names('before'));
    expect(await matches(`component-code-interpretation=${LOINC}|8480-6$N`)).toEqual(names('after'));
    expect(await matches(`component-code-interpretation=${LOINC}|8462-4$H,${LOINC}|8480-6$H`)).toEqual(names('before', 'after'));
    expect(await matches(`component-interpretation=H`)).toEqual(names('before', 'after'));

    const cs = await request(t.http).get('/fhir/metadata');
    const params = cs.body.rest[0].resource.find((r: { type: string }) => r.type === 'Observation').searchParam;
    expect(params.filter((p: { name: string }) => ['component-code-interpretation', 'code-effective'].includes(p.name))).toEqual([
      { name: 'code-effective', type: 'composite', definition: 'http://hie.example.org/fhir/SearchParameter/hie-observation-code-effective' },
      { name: 'component-code-interpretation', type: 'composite', definition: PAIR_URL },
    ]);
  });

  it('refuses a composite whose component names no known search parameter (422, nothing stored)', async () => {
    const [{ n: before }] = await t.db.query(`SELECT count(*)::int AS n FROM resource WHERE resource_type = 'SearchParameter'`);
    const res = await create(admin, {
      resourceType: 'SearchParameter',
      url: 'http://hie.example.org/fhir/SearchParameter/broken-composite',
      name: 'Broken',
      status: 'active',
      description: 'names a component that does not exist',
      code: 'broken-composite',
      base: ['Observation'],
      type: 'composite',
      expression: 'Observation',
      component: [
        { definition: 'http://hl7.org/fhir/SearchParameter/clinical-code', expression: 'code' },
        { definition: 'http://example.org/SearchParameter/nothing', expression: 'status' },
      ],
    });
    expect(res.status).toBe(422);
    expect(res.body.issue).toEqual([
      {
        severity: 'error',
        code: 'not-supported',
        diagnostics: "SearchParameter.component[1].definition 'http://example.org/SearchParameter/nothing' is not an R4 or active custom search parameter of a type a composite can hold",
        expression: ['SearchParameter.component[1].definition'],
      },
    ]);
    const [{ n: after }] = await t.db.query(`SELECT count(*)::int AS n FROM resource WHERE resource_type = 'SearchParameter'`);
    expect(after).toBe(before);
  });
});
