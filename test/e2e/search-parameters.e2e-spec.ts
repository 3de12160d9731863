import request from 'supertest';
import { searchParamsOf } from '../../src/fhir/search/search-parameter.registry';
import { registerTestClient } from '../support/auth';
import { FHIR_JSON, hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

type Agent = TestApp['api'];

const RUN = Date.now().toString(36);
const RESIDENCE_URL = 'http://hie.example.org/fhir/StructureDefinition/district-of-residence';

function searchParameter(code: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    resourceType: 'SearchParameter',
    url: `http://hie.example.org/fhir/SearchParameter/${code}`,
    name: 'Test',
    status: 'active',
    description: 'test parameter',
    code,
    base: ['Patient'],
    type: 'string',
    expression: `Patient.extension('${RESIDENCE_URL}').value`,
    ...extra,
  };
}

function residentOf(district: string, mrn: string): Record<string, unknown> {
  return hiePatient({
    identifier: [{ system: 'http://hospital-a.example.org/mrn', value: mrn }],
    extension: [{ url: RESIDENCE_URL, valueString: district }],
  });
}

async function ids(agent: Agent, query: string): Promise<string[]> {
  const res = await agent.get(`/fhir/Patient?${query}`);
  expect(res.status).toBe(200);
  return (res.body.entry ?? [])
    .filter((e: { search?: { mode: string } }) => e.search?.mode === 'match')
    .map((e: { resource: { id: string } }) => e.resource.id)
    .sort();
}

async function until(check: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('custom SearchParameters (stored and shipped)', () => {
  let t: TestApp;
  let admin: Agent;
  beforeAll(async () => {
    t = await createTestApp();
    const client = await registerTestClient(t, { role: 'admin', scopes: ['system/SearchParameter.cruds'], purposes: ['HSYSADMIN'] });
    admin = request.agent(t.http).set('Authorization', `Bearer ${await client.token()}`);
  }, 30_000);
  afterAll(() => t.close());

  async function create(agent: Agent, body: Record<string, unknown>): Promise<request.Response> {
    return agent.post(`/fhir/${body.resourceType as string}`).set('Content-Type', FHIR_JSON).send(body);
  }

  it('indexes new writes at once; a resource written before the parameter is found only after $reindex', async () => {
    const code = `residence-${RUN}`;
    const before = await create(t.api, residentOf(`Ōkāwa ${RUN}`, `SP-A-${RUN}`));
    expect(before.status).toBe(201);

    const sp = await create(admin, searchParameter(code));
    expect({ status: sp.status, issues: sp.body.issue }).toEqual({ status: 201, issues: undefined });

    const after = await create(t.api, residentOf(`Okawa North ${RUN}`, `SP-B-${RUN}`));
    expect(after.status).toBe(201);
    const other = await create(t.api, residentOf(`Elsewhere ${RUN}`, `SP-C-${RUN}`));

    // Case- and accent-insensitive prefix like every string parameter.
    expect(await ids(t.api, `${code}=okawa`)).toEqual([after.body.id]);
    expect(await ids(t.api, `${code}:exact=Elsewhere ${RUN}`)).toEqual([other.body.id]);

    const reindex = await admin.post('/fhir/Patient/$reindex').set('Content-Type', FHIR_JSON).send({});
    expect(reindex.status).toBe(200);
    expect(reindex.body.resourceType).toBe('Parameters');
    const [{ n }] = await t.db.query(`SELECT count(*)::int AS n FROM resource WHERE resource_type = 'Patient' AND NOT deleted`);
    expect(reindex.body.parameter).toEqual([
      { name: 'processed', valueInteger: n },
      { name: 'complete', valueBoolean: true },
    ]);

    expect(await ids(t.api, `${code}=okawa`)).toEqual([before.body.id, after.body.id].sort());
    expect(await ids(t.api, `${code}:missing=false&${code}=elsewhere`)).toEqual([other.body.id]);
  });

  it('lists custom parameters in the CapabilityStatement with their canonical URL', async () => {
    const code = `listed-${RUN}`;
    expect((await create(admin, searchParameter(code, { type: 'token' }))).status).toBe(201);
    const cs = await request(t.http).get('/fhir/metadata');
    const patient = cs.body.rest[0].resource.find((r: { type: string }) => r.type === 'Patient');
    expect(patient.searchParam.find((p: { name: string }) => p.name === code)).toEqual({
      name: code,
      type: 'token',
      definition: `http://hie.example.org/fhir/SearchParameter/${code}`,
    });
    expect(patient.searchParam.find((p: { name: string }) => p.name === 'person-id')).toEqual({
      name: 'person-id',
      type: 'token',
      definition: 'http://hie.example.org/fhir/SearchParameter/hie-patient-person-id',
    });
  });

  it('the shipped person-id parameter (fhir-profiles/) finds a Patient by its regional person id', async () => {
    const personId = `P${RUN.toUpperCase()}`;
    const p = await create(
      t.api,
      hiePatient({
        identifier: [
          { system: 'http://hospital-a.example.org/mrn', value: `SHIP-${RUN}` },
          { system: 'http://hie.example.org/fhir/sid/person-id', value: personId },
        ],
      }),
    );
    const decoy = await create(t.api, hiePatient({ identifier: [{ system: 'http://hospital-b.example.org/mrn', value: personId }] }));
    expect([p.status, decoy.status]).toEqual([201, 201]);
    expect(await ids(t.api, `person-id=${personId}`)).toEqual([p.body.id]);
    // The same value under another system is not a person id.
    expect(await ids(t.api, `identifier=${personId}`)).toEqual([p.body.id, decoy.body.id].sort());
  });

  it.each([
    ['a FHIRPath expression that does not parse', { expression: "Patient.identifier.where(system='x'" }, 400, 'invalid', 'SearchParameter.expression'],
    ['an unknown FHIRPath function', { expression: 'Patient.name.nosuchfunction()' }, 400, 'invalid', 'SearchParameter.expression'],
    ['an unsupported type', { type: 'special' }, 422, 'not-supported', 'SearchParameter.type'],
    ['a composite without components', { type: 'composite' }, 422, 'not-supported', 'SearchParameter.component'],
    ['an active parameter without expression', { expression: undefined }, 422, 'required', 'SearchParameter.expression'],
    ['a code reserved for built-ins', { code: `_x${RUN}` }, 422, 'value', 'SearchParameter.code'],
    ['a code that redefines an R4 parameter', { code: 'name' }, 422, 'business-rule', 'SearchParameter.code'],
    ['a code that redefines the shipped person-id', { code: 'person-id' }, 422, 'duplicate', 'SearchParameter.code'],
    ['a reference target that is not a type', { type: 'reference', target: ['Nothing'] }, 400, 'code-invalid', 'SearchParameter.target[0]'],
    ['a reference target that is not storable', { type: 'reference', target: ['Parameters'] }, 422, 'not-supported', 'SearchParameter.target'],
    ['a base that is not storable', { base: ['OperationOutcome'] }, 422, 'not-supported', 'SearchParameter.base'],
  ])('refuses %s (%s) and stores nothing', async (_what, change, status, code, expression) => {
    const body = searchParameter(`bad-${RUN}`, { ...change, url: `http://hie.example.org/fhir/SearchParameter/bad-${RUN}-${expression}-${code}` });
    const res = await create(admin, body);
    expect({ status: res.status, code: res.body.issue?.[0]?.code, expression: res.body.issue?.[0]?.expression }).toEqual({
      status,
      code,
      expression: [expression],
    });
    const [{ n }] = await t.db.query(`SELECT count(*)::int AS n FROM resource WHERE resource_type = 'SearchParameter' AND content->>'url' = $1`, [
      body.url,
    ]);
    expect(n).toBe(0);
    expect(searchParamsOf('Patient').get(`bad-${RUN}`)).toBeUndefined();
  });

  it('refuses a second active parameter with the same code on the same type', async () => {
    const code = `twice-${RUN}`;
    expect((await create(admin, searchParameter(code))).status).toBe(201);
    const again = await create(admin, searchParameter(code, { url: `http://hie.example.org/fhir/SearchParameter/${code}-2` }));
    expect({ status: again.status, code: again.body.issue[0].code }).toEqual({ status: 422, code: 'duplicate' });
    // A draft is only a stored conformance resource: not checked, not applied.
    const draft = await create(admin, searchParameter(code, { status: 'draft', url: `http://hie.example.org/fhir/SearchParameter/${code}-3` }));
    expect(draft.status).toBe(201);
  });

  it('an update that breaks a stored parameter is refused and the stored version stays in force', async () => {
    const code = `kept-${RUN}`;
    const sp = await create(admin, searchParameter(code));
    const res = await admin
      .put(`/fhir/SearchParameter/${sp.body.id}`)
      .set('Content-Type', FHIR_JSON)
      .send({ ...sp.body, expression: 'Patient.extension(' });
    expect({ status: res.status, code: res.body.issue[0].code }).toEqual({ status: 400, code: 'invalid' });
    const read = await admin.get(`/fhir/SearchParameter/${sp.body.id}`);
    expect(read.body.meta.versionId).toBe('1');
    expect(searchParamsOf('Patient').get(code)?.expression).toBe(`Patient.extension('${RESIDENCE_URL}').value`);
  });

  it('retiring or deleting a parameter takes it out of search at once (unknown: lenient ignores, strict refuses)', async () => {
    const code = `retired-${RUN}`;
    const sp = await create(admin, searchParameter(code));
    expect(searchParamsOf('Patient').has(code)).toBe(true);
    const retired = await admin.put(`/fhir/SearchParameter/${sp.body.id}`).set('Content-Type', FHIR_JSON).send({ ...sp.body, status: 'retired' });
    expect(retired.status).toBe(200);
    const strict = await t.api.get(`/fhir/Patient?${code}=x`).set('Prefer', 'handling=strict');
    expect(strict.status).toBe(400);

    const active = await admin.put(`/fhir/SearchParameter/${sp.body.id}`).set('Content-Type', FHIR_JSON).send({ ...sp.body, status: 'active' });
    expect(active.status).toBe(200);
    expect((await t.api.get(`/fhir/Patient?${code}=x`).set('Prefer', 'handling=strict')).status).toBe(200);
    expect((await admin.delete(`/fhir/SearchParameter/${sp.body.id}`)).status).toBe(200);
    expect((await t.api.get(`/fhir/Patient?${code}=x`).set('Prefer', 'handling=strict')).status).toBe(400);
  });

  it('only admins write SearchParameters; hospitals may read and search them', async () => {
    const code = `hospital-${RUN}`;
    const denied = await create(t.api, searchParameter(code));
    expect({ status: denied.status, code: denied.body.issue[0].code }).toEqual({ status: 403, code: 'forbidden' });
    const made = await create(admin, searchParameter(code));
    const found = await t.api.get(`/fhir/SearchParameter?code=${code}`);
    expect(found.status).toBe(200);
    expect(found.body.entry.map((e: { resource: { id: string } }) => e.resource.id)).toEqual([made.body.id]);
    const update = await t.api.put(`/fhir/SearchParameter/${made.body.id}`).set('Content-Type', FHIR_JSON).send({ ...made.body, status: 'retired' });
    expect(update.status).toBe(403);
  });

  it('a SearchParameter committed by another node reaches this node by LISTEN/NOTIFY', async () => {
    // Written with plain SQL on its own connection, as another node would: nothing in this process
    // knows of it until the trigger's notification arrives.
    const code = `othernode-${RUN}`;
    const id = `other-node-${RUN}`;
    const content = { ...searchParameter(code, { type: 'token' }), id, meta: { versionId: '1', lastUpdated: new Date().toISOString() } };
    await t.db.query(
      `INSERT INTO resource (resource_type, id, version_id, last_updated, deleted, compartments, security_labels, content)
       VALUES ('SearchParameter', $1, 1, now(), false, '{}', '{}', $2)`,
      [id, JSON.stringify(content)],
    );
    await until(() => searchParamsOf('Patient').has(code));
    expect(searchParamsOf('Patient').get(code)).toMatchObject({ code, type: 'token' });
    await t.db.query(`UPDATE resource SET deleted = true, content = NULL, version_id = 2 WHERE resource_type = 'SearchParameter' AND id = $1`, [id]);
    await until(() => !searchParamsOf('Patient').has(code));
  });
});
