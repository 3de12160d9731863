import { FHIR_JSON, hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

const JSON_PATCH = 'application/json-patch+json';

describe('PATCH', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t.close());

  async function create(): Promise<string> {
    const res = await t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(hiePatient());
    expect(res.status).toBe(201);
    return res.body.id;
  }
  /** A JSON Patch request for Patient/{id}; the caller adds headers and sends the operations. */
  const jsonPatch = (id: string) => t.api.patch(`/fhir/Patient/${id}`).set('Content-Type', JSON_PATCH);
  async function version(id: string): Promise<number> {
    const [{ version_id }] = await t.db.query(`SELECT version_id FROM resource WHERE resource_type = 'Patient' AND id = $1`, [id]);
    return version_id;
  }

  it('applies a JSON Patch and stores a new version', async () => {
    const id = await create();
    const res = await jsonPatch(id).send([
      { op: 'test', path: '/gender', value: 'female' },
      { op: 'replace', path: '/birthDate', value: '1981-05-06' },
      { op: 'add', path: '/name/0/given/-', value: 'Marie' },
    ]);
    expect(res.status).toBe(200);
    expect(res.headers.etag).toBe('W/"2"');
    expect(res.body.birthDate).toBe('1981-05-06');
    expect(res.body.name[0].given).toEqual(['Anna', 'Lena', 'Marie']);
    const history = await t.api.get(`/fhir/Patient/${id}/_history`);
    expect(history.body.entry[0].request.method).toBe('PATCH');
  });

  it('applies a FHIRPath Patch', async () => {
    const id = await create();
    const res = await t.api
      .patch(`/fhir/Patient/${id}`)
      .set('Content-Type', FHIR_JSON)
      .send({
        resourceType: 'Parameters',
        parameter: [
          { name: 'operation', part: [{ name: 'type', valueCode: 'replace' }, { name: 'path', valueString: 'Patient.gender' }, { name: 'value', valueCode: 'other' }] },
          { name: 'operation', part: [{ name: 'type', valueCode: 'add' }, { name: 'path', valueString: 'Patient' }, { name: 'name', valueString: 'active' }, { name: 'value', valueBoolean: true }] },
        ],
      });
    expect(res.status).toBe(200);
    expect(res.body.gender).toBe('other');
    expect(res.body.active).toBe(true);
    expect(await version(id)).toBe(2);
  });

  it.each([
    ['a result outside a required binding', [{ op: 'replace', path: '/gender', value: 'robot' }], 400, 'code-invalid'],
    ['a result that breaks the regional profile', [{ op: 'remove', path: '/identifier' }], 422, 'structure'],
    ['a failed test operation', [{ op: 'test', path: '/gender', value: 'male' }], 422, 'processing'],
    ['a path that does not exist', [{ op: 'remove', path: '/telecom' }], 422, 'processing'],
    ['a malformed operation', [{ op: 'explode', path: '/gender' }], 400, 'invalid'],
    ['a change of id', [{ op: 'replace', path: '/id', value: 'other' }], 400, 'invalid'],
  ])('rejects %s and stores nothing', async (_name, patch, status, code) => {
    const id = await create();
    const res = await jsonPatch(id).send(patch);
    expect(res.status).toBe(status);
    expect(res.body.issue.map((i: { code: string }) => i.code)).toContain(code);
    expect(await version(id)).toBe(1);
  });

  it('refuses an add past the end of an array (RFC 6902 §4.1) and stores nothing', async () => {
    const id = await create();
    // given has 2 elements: index 2 appends (allowed), index 3 is past the end.
    const res = await jsonPatch(id).send([
      { op: 'add', path: '/name/0/given/2', value: 'Marie' },
      { op: 'add', path: '/name/0/given/4', value: 'Sofie' },
    ]);
    expect(res.status).toBe(422);
    expect(res.body.issue).toEqual([
      {
        severity: 'error',
        code: 'processing',
        diagnostics: 'JSON Patch operation 1 (add) targets index 4 of an array of 3 elements at /name/0/given/4: at most 3 (RFC 6902 §4.1)',
        expression: ['[1]'],
      },
    ]);
    expect(await version(id)).toBe(1);
    const copied = await jsonPatch(id).send([{ op: 'copy', from: '/name/0/family', path: '/name/0/given/5' }]);
    expect(copied.status).toBe(422);
    expect(copied.body.issue[0].expression).toEqual(['[0]']);
    expect(await version(id)).toBe(1);
  });

  it('adds at the index equal to the length (the end) and before an existing element', async () => {
    const id = await create();
    const res = await jsonPatch(id).send([
      { op: 'add', path: '/name/0/given/2', value: 'Marie' },
      { op: 'add', path: '/name/0/given/0', value: 'Eva' },
    ]);
    expect(res.status).toBe(200);
    expect(res.body.name[0].given).toEqual(['Eva', 'Anna', 'Lena', 'Marie']);
    expect(await version(id)).toBe(2);
  });

  it('rejects an invalid FHIRPath Patch operation type with 400', async () => {
    const id = await create();
    const res = await t.api
      .patch(`/fhir/Patient/${id}`)
      .set('Content-Type', FHIR_JSON)
      .send({ resourceType: 'Parameters', parameter: [{ name: 'operation', part: [{ name: 'type', valueCode: 'explode' }] }] });
    expect(res.status).toBe(400);
    expect(res.body.issue[0].expression).toEqual(['Parameters.parameter[0]']);
    expect(await version(id)).toBe(1);
  });

  it('honours If-Match', async () => {
    const id = await create();
    const stale = await jsonPatch(id).set('If-Match', 'W/"7"').send([{ op: 'replace', path: '/gender', value: 'male' }]);
    expect(stale.status).toBe(412);
    const ok = await jsonPatch(id).set('If-Match', 'W/"1"').send([{ op: 'replace', path: '/gender', value: 'male' }]);
    expect(ok.status).toBe(200);
    expect(await version(id)).toBe(2);
  });

  it('answers an unknown resource as one the client may not change (403, existence not disclosed)', async () => {
    const res = await t.api.patch('/fhir/Patient/nope-404').set('Content-Type', JSON_PATCH).send([{ op: 'remove', path: '/gender' }]);
    expect(res.status).toBe(403);
    expect(res.body.issue[0]).toMatchObject({ code: 'forbidden', diagnostics: 'Patient/nope-404 is not a resource this client may change' });
  });
});
