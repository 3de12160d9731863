import { FHIR_JSON, hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

interface BadInputCase {
  name: string;
  send: (t: TestApp, id: string) => ReturnType<TestApp['api']['get']>;
  status: number;
  code: string;
  /** Part of the diagnostics or an expression that says what and where. */
  says?: RegExp;
}

const cases: BadInputCase[] = [
  {
    name: 'malformed JSON',
    send: (t) => t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send('{"resourceType": "Patient", '),
    status: 400,
    code: 'structure',
    says: /not valid JSON/,
  },
  {
    name: 'resourceType does not match the URL',
    send: (t) => t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send({ resourceType: 'Observation' }),
    status: 400,
    code: 'invalid',
    says: /does not match the type in the URL/,
  },
  {
    name: 'id in body differs from the URL',
    send: (t, id) => t.api.put(`/fhir/Patient/${id}`).set('Content-Type', FHIR_JSON).send(hiePatient({ id: 'other-id' })),
    status: 400,
    code: 'invalid',
    says: /does not match the URL/,
  },
  {
    name: 'update without id in the body',
    send: (t, id) => t.api.put(`/fhir/Patient/${id}`).set('Content-Type', FHIR_JSON).send(hiePatient()),
    status: 400,
    code: 'required',
  },
  {
    name: 'unknown resource type',
    send: (t) => t.api.post('/fhir/Spaceship').set('Content-Type', FHIR_JSON).send({ resourceType: 'Spaceship' }),
    status: 404,
    code: 'not-supported',
    says: /Unknown resource type 'Spaceship'/,
  },
  {
    name: 'non-storable resource type (Parameters)',
    send: (t) => t.api.post('/fhir/Parameters').set('Content-Type', FHIR_JSON).send({ resourceType: 'Parameters' }),
    status: 404,
    code: 'not-supported',
  },
  {
    name: 'unknown element',
    send: (t) => t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(hiePatient({ favouriteColour: 'blue' })),
    status: 400,
    code: 'structure',
    says: /favouriteColour/,
  },
  {
    name: 'wrong cardinality: a single-valued element sent as an array',
    send: (t) => t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(hiePatient({ birthDate: ['1980-04-01'] })),
    status: 400,
    code: 'structure',
    says: /Patient\.birthDate/,
  },
  {
    name: 'wrong cardinality: required element missing (Observation.code)',
    send: (t) => t.api.post('/fhir/Observation').set('Content-Type', FHIR_JSON).send({ resourceType: 'Observation', status: 'final' }),
    status: 400,
    code: 'structure',
    says: /Observation\.code/,
  },
  {
    name: 'bad date format',
    send: (t) => t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(hiePatient({ birthDate: '1980-13-45' })),
    status: 400,
    code: 'structure',
    says: /Patient\.birthDate/,
  },
  {
    name: 'wrong JSON type for a primitive',
    send: (t) => t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(hiePatient({ name: [{ family: 42 }] })),
    status: 400,
    code: 'structure',
    says: /Patient\.name\[0\]\.family/,
  },
  {
    name: 'code outside a required binding (Patient.gender)',
    send: (t) => t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(hiePatient({ gender: 'x' })),
    status: 400,
    code: 'code-invalid',
    says: /Patient\.gender/,
  },
  {
    name: 'code outside a required binding (Observation.status)',
    send: (t) =>
      t.api
        .post('/fhir/Observation')
        .set('Content-Type', FHIR_JSON)
        .send({ resourceType: 'Observation', status: 'bogus', code: { text: 'weight' } }),
    status: 400,
    code: 'code-invalid',
    says: /Observation\.status/,
  },
  {
    name: 'regional profile: Patient without identifier',
    send: (t) => t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(hiePatient({ identifier: undefined })),
    status: 422,
    code: 'structure',
    says: /hie-patient.*Patient\.identifier/,
  },
  {
    name: 'oversize body',
    send: (t) =>
      t.api
        .post('/fhir/Patient')
        .set('Content-Type', FHIR_JSON)
        .send(JSON.stringify(hiePatient({ text: { status: 'generated', div: `<div xmlns="http://www.w3.org/1999/xhtml">${'a'.repeat(17 * 1024 * 1024)}</div>` } }))),
    status: 413,
    code: 'too-long',
  },
  {
    name: 'XML body that is not well-formed',
    send: (t) =>
      t.api.post('/fhir/Patient').set('Content-Type', 'application/fhir+xml').send('<Patient xmlns="http://hl7.org/fhir"><name></Patient>'),
    status: 400,
    code: 'structure',
    says: /not well-formed XML/,
  },
  {
    name: 'a media type the server does not write, by Accept',
    send: (t, id) => t.api.get(`/fhir/Patient/${id}`).set('Accept', 'text/csv'),
    status: 406,
    code: 'not-supported',
    says: /None of the accepted media types \(text\/csv\)/,
  },
  {
    name: 'a media type the server does not write, by _format',
    send: (t, id) => t.api.get(`/fhir/Patient/${id}?_format=turtle`),
    status: 406,
    code: 'not-supported',
  },
  {
    name: 'body without Content-Type',
    send: (t) => t.api.post('/fhir/Patient').set('Content-Type', 'text/plain').send('hello'),
    status: 415,
    code: 'not-supported',
  },
  {
    name: 'unsupported method: PUT on the type',
    send: (t) => t.api.put('/fhir/Patient').set('Content-Type', FHIR_JSON).send(hiePatient()),
    status: 405,
    code: 'not-supported',
  },
  {
    name: 'unsupported method: POST on an instance',
    send: (t, id) => t.api.post(`/fhir/Patient/${id}`).set('Content-Type', FHIR_JSON).send(hiePatient({ id })),
    status: 405,
    code: 'not-supported',
  },
  {
    name: 'body is an array, not a resource',
    send: (t) => t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send([hiePatient()]),
    status: 400,
    code: 'structure',
  },
  {
    name: 'body without resourceType',
    send: (t) => t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send({ gender: 'female' }),
    status: 400,
    code: 'required',
  },
  {
    name: 'invalid id in the URL',
    send: (t) => t.api.get('/fhir/Patient/not_a*valid id'),
    status: 400,
    code: 'invalid',
  },
  {
    name: 'malformed If-Match',
    send: (t, id) =>
      t.api.put(`/fhir/Patient/${id}`).set('Content-Type', FHIR_JSON).set('If-Match', 'yesterday').send(hiePatient({ id })),
    status: 400,
    code: 'invalid',
    says: /If-Match/,
  },
  {
    name: 'non-numeric version in vread',
    send: (t, id) => t.api.get(`/fhir/Patient/${id}/_history/abc`),
    status: 400,
    code: 'invalid',
  },
  {
    name: 'vread of a version id beyond any integer',
    send: (t, id) => t.api.get(`/fhir/Patient/${id}/_history/99999999999999999999999`),
    status: 400,
    code: 'invalid',
    says: /Version id '99999999999999999999999' is not an integer from 1 to 2147483647/,
  },
  {
    name: 'vread of a version id one past the version column (2^31)',
    send: (t, id) => t.api.get(`/fhir/Patient/${id}/_history/2147483648`),
    status: 400,
    code: 'invalid',
    says: /2147483648/,
  },
  {
    name: 'history _cursor beyond the bigint sequence',
    send: (t) => t.api.get('/fhir/Patient/_history?_cursor=9999999999999999999'),
    status: 400,
    code: 'invalid',
    says: /_cursor/,
  },
  {
    name: 'invalid _summary on read',
    send: (t, id) => t.api.get(`/fhir/Patient/${id}?_summary=everything`),
    status: 400,
    code: 'invalid',
    says: /_summary/,
  },
  {
    name: 'invalid _since on history',
    send: (t, id) => t.api.get(`/fhir/Patient/${id}/_history?_since=last-week`),
    status: 400,
    code: 'invalid',
    says: /_since/,
  },
  {
    name: 'invalid _count on history',
    send: (t) => t.api.get('/fhir/Patient/_history?_count=-3'),
    status: 400,
    code: 'invalid',
    says: /_count/,
  },
];

describe('bad input gets a 4xx OperationOutcome and changes nothing', () => {
  let t: TestApp;
  let id: string;

  async function snapshot(): Promise<{ resources: number; versions: number; current: number }> {
    const [{ resources, versions }] = await t.db.query(
      `SELECT (SELECT count(*)::int FROM resource) AS resources, (SELECT count(*)::int FROM resource_history) AS versions`,
    );
    const [{ version_id }] = await t.db.query(`SELECT version_id FROM resource WHERE resource_type = 'Patient' AND id = $1`, [id]);
    return { resources, versions, current: version_id };
  }

  beforeAll(async () => {
    t = await createTestApp();
    const res = await t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(hiePatient());
    expect(res.status).toBe(201);
    id = res.body.id;
  });
  afterAll(() => t.close());

  it('has at least 20 cases', () => {
    expect(cases.length).toBeGreaterThanOrEqual(20);
  });

  it.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const before = await snapshot();
    const res = await c.send(t, id);
    expect(res.status).toBe(c.status);
    expect(res.headers['content-type']).toBe('application/fhir+json; charset=utf-8');
    expect(res.body.resourceType).toBe('OperationOutcome');
    expect(res.body.issue.map((i: { code: string }) => i.code)).toContain(c.code);
    if (c.says) {
      const text = JSON.stringify(res.body.issue.map((i: { diagnostics?: string; expression?: string[] }) => [i.diagnostics, i.expression]));
      expect(text).toMatch(c.says);
    }
    expect(await snapshot()).toEqual(before);
  });

  it('answers an unexpected failure with 500, a request id and nothing internal', async () => {
    // Break storage for one request: a read against a renamed table fails inside Postgres.
    await t.db.query('ALTER TABLE resource RENAME TO resource_moved');
    try {
      const res = await t.api.get(`/fhir/Patient/${id}`).set('X-Request-Id', 'req-test-500-abc');
      expect(res.status).toBe(500);
      expect(res.body.issue).toEqual([
        { severity: 'error', code: 'exception', diagnostics: 'Internal server error (request id req-test-500-abc)' },
      ]);
      expect(res.headers['x-request-id']).toBe('req-test-500-abc');
      expect(res.text).not.toMatch(/SELECT|relation|resource_moved|at .*\.ts/);
    } finally {
      await t.db.query('ALTER TABLE resource_moved RENAME TO resource');
    }
  });
});
