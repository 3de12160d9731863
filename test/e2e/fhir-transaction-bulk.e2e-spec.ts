import { Client } from 'pg';
import { FHIR_JSON, hiePatient } from '../support/fixtures';
import { postTransaction } from '../support/bundles';
import { createTestApp, TestApp } from '../support/test-app';

/**
 * The creates of a transaction Bundle are written together (ResourceRepository.deferCreates); the
 * rows they leave must be exactly those of the one-by-one REST path, and a failure anywhere still
 * rolls everything back.
 */
describe('transaction creates written together', () => {
  let t: TestApp;
  let indexTables: string[];
  beforeAll(async () => {
    t = await createTestApp();
    indexTables = (
      await t.db.query(`SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_name LIKE 'search\\_%' ORDER BY 1`)
    ).map((r: { table_name: string }) => r.table_name);
  });
  afterAll(() => t.close());

  const observation = (patientId: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
    resourceType: 'Observation',
    status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs', display: 'Vital Signs' }] }],
    code: { coding: [{ system: 'http://loinc.org', code: '8867-4', display: 'Heart rate' }], text: 'Heart rate' },
    subject: { reference: `Patient/${patientId}` },
    performer: [{ reference: `Patient/${patientId}` }],
    effectivePeriod: { start: '2021-03-04T10:00:00+01:00', end: '2021-03-04T10:05:00+01:00' },
    issued: '2021-03-04T10:06:00Z',
    identifier: [{ system: 'urn:example:obs', value: 'same-for-both' }],
    valueQuantity: { value: 72.25, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
    component: [
      {
        code: { coding: [{ system: 'http://loinc.org', code: '8480-6' }] },
        valueQuantity: { value: 120, unit: 'mm[Hg]', system: 'http://unitsofmeasure.org', code: 'mm[Hg]' },
      },
    ],
    meta: { security: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality', code: 'N' }] },
    ...extra,
  });

  /** Every stored row of a resource except its id and write time: current row, history, each index table. */
  async function rowsOf(type: string, id: string): Promise<Record<string, unknown>> {
    const [current] = await t.db.query(
      `SELECT version_id, deleted, author_org, compartments, security_labels, content - 'id' - 'meta' AS content, content->'meta'->'security' AS security
         FROM resource WHERE resource_type = $1 AND id = $2`,
      [type, id],
    );
    const history = await t.db.query(
      `SELECT version_id, deleted, method, author_org, content - 'id' - 'meta' AS content FROM resource_history WHERE resource_type = $1 AND id = $2 ORDER BY version_id`,
      [type, id],
    );
    const index: Record<string, string[]> = {};
    for (const table of indexTables) {
      const rows: { r: string }[] = await t.db.query(`SELECT (to_jsonb(x) - 'id')::text AS r FROM ${table} x WHERE resource_type = $1 AND id = $2`, [type, id]);
      index[table] = rows.map((row) => row.r).sort();
    }
    return { current, history, index };
  }

  it('a resource created in a transaction Bundle has exactly the rows of the same resource created by REST', async () => {
    const patient = await t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(hiePatient({ identifier: [{ system: 'urn:example:bulk', value: 'p1' }] }));
    expect(patient.status).toBe(201);
    const rest = await t.api.post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(observation(patient.body.id));
    expect(rest.status).toBe(201);
    const bundle = await postTransaction(t.api, [
      { fullUrl: 'urn:uuid:5b0f0c3e-1111-4a5e-9d7e-000000000001', resource: observation(patient.body.id), request: { method: 'POST', url: 'Observation' } },
      { resource: observation(patient.body.id, { status: 'amended' }), request: { method: 'POST', url: 'Observation' } },
    ]);
    expect(bundle.status).toBe(200);
    expect(bundle.body.entry[0].response).toMatchObject({ status: '201 Created', etag: 'W/"1"' });
    const bulkId = /Observation\/([^/]+)\/_history\/1$/.exec(bundle.body.entry[0].response.location)![1];

    const expected = await rowsOf('Observation', rest.body.id);
    const actual = await rowsOf('Observation', bulkId);
    expect(actual).toEqual(expected);
    // The comparison means something: the resource has rows in the main index tables.
    const index = expected.index as Record<string, string[]>;
    for (const table of ['search_token', 'search_date', 'search_quantity', 'search_reference']) expect(index[table].length).toBeGreaterThan(0);
    expect((expected.current as { compartments: string[] }).compartments).toEqual([patient.body.id]);
    expect(expected.history).toHaveLength(1);

    // Same answer to a search, and the stored meta matches what the response said.
    const found = await t.api.get(`/fhir/Observation?identifier=urn:example:obs|same-for-both&subject=Patient/${patient.body.id}&_count=10`);
    expect(found.status).toBe(200);
    expect(found.body.entry.map((e: { resource: { id: string } }) => e.resource.id).sort()).toEqual(
      [rest.body.id, bulkId, /Observation\/([^/]+)\//.exec(bundle.body.entry[1].response.location)![1]].sort(),
    );
    const read = await t.api.get(`/fhir/Observation/${bulkId}`);
    expect(read.body.meta.versionId).toBe('1');
    expect(read.body.meta.lastUpdated).toBe(bundle.body.entry[0].response.lastModified);
  });

  it('rolls back every chunk of a large transaction when an entry after the first chunk fails, naming that entry', async () => {
    const patient = await t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(hiePatient({ identifier: [{ system: 'urn:example:bulk', value: 'p2' }] }));
    const before = await t.db.query(`SELECT (SELECT count(*)::int FROM resource) AS resources, (SELECT count(*)::int FROM resource_history) AS versions, (SELECT count(*)::int FROM search_token) AS tokens`);
    const entry = Array.from({ length: 1100 }, (_, n) => ({
      resource: observation(patient.body.id, n === 1050 ? { status: 'not-a-status' } : {}),
      request: { method: 'POST', url: 'Observation' },
    }));
    const res = await t.api.post('/fhir').set('Content-Type', FHIR_JSON).send({ resourceType: 'Bundle', type: 'transaction', entry });
    expect(res.status).toBe(400);
    expect(res.body.resourceType).toBe('OperationOutcome');
    expect(res.body.issue[0].diagnostics).toMatch(/^Bundle\.entry\[1050\]: /);
    const after = await t.db.query(`SELECT (SELECT count(*)::int FROM resource) AS resources, (SELECT count(*)::int FROM resource_history) AS versions, (SELECT count(*)::int FROM search_token) AS tokens`);
    expect(after).toEqual(before);
  });

  it('a later entry of the same transaction sees the queued creates (update after create, read after create)', async () => {
    const res = await postTransaction(t.api, [
      { resource: hiePatient({ identifier: [{ system: 'urn:example:bulk', value: 'p3' }] }), request: { method: 'POST', url: 'Patient' } },
      // Conditional update on the identifier the POST above just created: must find it (1 match -> update, version 2).
      {
        resource: hiePatient({ identifier: [{ system: 'urn:example:bulk', value: 'p3' }], gender: 'male' }),
        request: { method: 'PUT', url: 'Patient?identifier=urn:example:bulk|p3' },
      },
    ]);
    expect(res.status).toBe(200);
    expect(res.body.entry.map((e: { response: { status: string; etag: string } }) => [e.response.status, e.response.etag])).toEqual([
      ['201 Created', 'W/"1"'],
      ['200 OK', 'W/"2"'],
    ]);
    const id = /Patient\/([^/]+)\/_history/.exec(res.body.entry[0].response.location)![1];
    expect(res.body.entry[1].response.location).toContain(`Patient/${id}/_history/2`);
    const history = await t.db.query(`SELECT version_id, method FROM resource_history WHERE resource_type = 'Patient' AND id = $1 ORDER BY version_id`, [id]);
    expect(history).toEqual([
      { version_id: 1, method: 'POST' },
      { version_id: 2, method: 'PUT' },
    ]);
    const [{ n }] = await t.db.query(`SELECT count(*)::int AS n FROM search_token WHERE resource_type = 'Patient' AND id = $1 AND param = 'gender' AND code = 'male'`, [id]);
    expect(n).toBe(1);
  });
  /** Statements this process sends that write history rows, while `work` runs (one per write, or one per queued chunk). */
  async function historyInserts(work: () => Promise<unknown>): Promise<number> {
    const spy = jest.spyOn(Client.prototype, 'query');
    try {
      await work();
      return spy.mock.calls.filter(([q]) => typeof q === 'string' && q.includes('INSERT INTO resource_history')).length;
    } finally {
      spy.mockRestore();
    }
  }

  it('PUT to ids nobody has is written with the creates (one statement), with the rows of a PUT by REST', async () => {
    const patient = await t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(hiePatient({ identifier: [{ system: 'urn:example:bulk', value: 'p4' }] }));
    const rest = await t.api.put('/fhir/Observation/put-rest-1').set('Content-Type', FHIR_JSON).send({ ...observation(patient.body.id), id: 'put-rest-1' });
    expect(rest.status).toBe(201);
    const ids = ['put-bulk-1', 'put-bulk-2', 'put-bulk-3', 'put-bulk-4', 'put-bulk-5'];
    let res!: Awaited<ReturnType<typeof postTransaction>>;
    const inserts = await historyInserts(async () => {
      res = await postTransaction(
        t.api,
        ids.map((id) => ({ fullUrl: `Observation/${id}`, resource: { ...observation(patient.body.id), id }, request: { method: 'PUT', url: `Observation/${id}` } })),
      );
    });
    expect(res.status).toBe(200);
    expect(res.body.entry.map((e: { response: { status: string; location: string } }) => [e.response.status, e.response.location.replace(/^.*\/fhir\//, '')])).toEqual(
      ids.map((id) => ['201 Created', `Observation/${id}/_history/1`]),
    );
    // Before: one INSERT per entry (5). Now the five first versions are one statement.
    expect(inserts).toBe(1);
    expect(await rowsOf('Observation', 'put-bulk-3')).toEqual(await rowsOf('Observation', 'put-rest-1'));
    const [{ method }] = await t.db.query(`SELECT method FROM resource_history WHERE resource_type = 'Observation' AND id = 'put-bulk-3'`);
    expect(method).toBe('PUT');
  });

  it('a PUT to an existing or deleted id in the same Bundle stays an update (next version), beside PUT-creates', async () => {
    const patient = await t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(hiePatient({ identifier: [{ system: 'urn:example:bulk', value: 'p5' }] }));
    expect((await t.api.put('/fhir/Observation/put-old-1').set('Content-Type', FHIR_JSON).send({ ...observation(patient.body.id), id: 'put-old-1' })).status).toBe(201);
    expect((await t.api.put('/fhir/Observation/put-gone-1').set('Content-Type', FHIR_JSON).send({ ...observation(patient.body.id), id: 'put-gone-1' })).status).toBe(201);
    expect((await t.api.delete('/fhir/Observation/put-gone-1')).status).toBe(200);
    const res = await postTransaction(t.api, [
      { resource: { ...observation(patient.body.id), id: 'put-new-1' }, request: { method: 'PUT', url: 'Observation/put-new-1' } },
      { resource: { ...observation(patient.body.id, { status: 'amended' }), id: 'put-old-1' }, request: { method: 'PUT', url: 'Observation/put-old-1' } },
      { resource: { ...observation(patient.body.id), id: 'put-gone-1' }, request: { method: 'PUT', url: 'Observation/put-gone-1' } },
    ]);
    expect(res.status).toBe(200);
    expect(res.body.entry.map((e: { response: { status: string; location: string } }) => [e.response.status, e.response.location.replace(/^.*\/fhir\//, '')])).toEqual([
      ['201 Created', 'Observation/put-new-1/_history/1'],
      ['200 OK', 'Observation/put-old-1/_history/2'],
      ['201 Created', 'Observation/put-gone-1/_history/3'],
    ]);
    const read = await t.api.get('/fhir/Observation/put-old-1');
    expect([read.body.status, read.body.meta.versionId]).toEqual(['amended', '2']);
  });

  it('two transactions that PUT the same new ids at once both succeed: one creates, the other updates', async () => {
    const patient = await t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(hiePatient({ identifier: [{ system: 'urn:example:bulk', value: 'p6' }] }));
    // Opposite entry orders: the reservation locks in one sorted order, so they cannot deadlock.
    const entries = (status: string): unknown[] =>
      ['race-a', 'race-b', 'race-c'].map((id) => ({ resource: { ...observation(patient.body.id, { status }), id }, request: { method: 'PUT', url: `Observation/${id}` } }));
    const [one, two] = await Promise.all([postTransaction(t.api, entries('final')), postTransaction(t.api, entries('amended').reverse())]);
    expect([one.status, two.status]).toEqual([200, 200]);
    const statuses = [...one.body.entry, ...two.body.entry].map((e: { response: { status: string } }) => e.response.status).sort();
    expect(statuses).toEqual(['200 OK', '200 OK', '200 OK', '201 Created', '201 Created', '201 Created']);
    const versions = await t.db.query(`SELECT id, max(version_id)::int AS v, count(*)::int AS n FROM resource_history WHERE resource_type = 'Observation' AND id LIKE 'race-%' GROUP BY id ORDER BY id`);
    expect(versions).toEqual([
      { id: 'race-a', v: 2, n: 2 },
      { id: 'race-b', v: 2, n: 2 },
      { id: 'race-c', v: 2, n: 2 },
    ]);
  });
});
