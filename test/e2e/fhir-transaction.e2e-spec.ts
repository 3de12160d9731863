import { FHIR_JSON, hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';
import { writeConflictOnce } from '../support/write-conflict';

const SYS = 'http://hospital-tx.example.org/mrn';

describe('batch and transaction Bundles, conditional operations', () => {
  let t: TestApp;
  const conflict = writeConflictOnce(['Observation']);
  beforeAll(async () => {
    t = await createTestApp([conflict.module]);
  });
  afterAll(() => t.close());

  const post = (body: object) => t.api.post('/fhir').set('Content-Type', FHIR_JSON).send(body);
  async function counts(): Promise<{ resources: number; versions: number }> {
    const [row] = await t.db.query(
      `SELECT (SELECT count(*)::int FROM resource) AS resources, (SELECT count(*)::int FROM resource_history) AS versions`,
    );
    return row;
  }
  async function createPatient(value: string): Promise<string> {
    const res = await t.api
      .post('/fhir/Patient')
      .set('Content-Type', FHIR_JSON)
      .send(hiePatient({ identifier: [{ system: SYS, value }] }));
    expect(res.status).toBe(201);
    return res.body.id;
  }

  it('creates resources atomically and rewrites urn:uuid references everywhere, including nested elements and extensions', async () => {
    const res = await post({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        {
          fullUrl: 'urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a',
          resource: hiePatient({ identifier: [{ system: SYS, value: 'tx-1' }] }),
          request: { method: 'POST', url: 'Patient' },
        },
        {
          fullUrl: 'urn:uuid:88f151c0-a954-468a-88bd-5ae15c08e059',
          resource: {
            resourceType: 'Observation',
            status: 'final',
            code: { coding: [{ system: 'http://loinc.org', code: '29463-7' }] },
            subject: { reference: 'urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a' },
            performer: [{ reference: 'urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a' }],
            extension: [
              { url: 'http://example.org/fhir/StructureDefinition/about', valueReference: { reference: 'urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a' } },
            ],
            valueQuantity: { value: 72.5, unit: 'kg', system: 'http://unitsofmeasure.org', code: 'kg' },
          },
          request: { method: 'POST', url: 'Observation' },
        },
      ],
    });
    expect(res.status).toBe(200);
    expect(res.body.type).toBe('transaction-response');
    expect(res.body.entry.map((e: { response: { status: string } }) => e.response.status)).toEqual(['201 Created', '201 Created']);
    const patientLocation: string = res.body.entry[0].response.location;
    const patientId = /Patient\/([^/]+)\/_history\/1$/.exec(patientLocation)![1];
    const obsId = /Observation\/([^/]+)\/_history\/1$/.exec(res.body.entry[1].response.location)![1];
    expect(res.body.entry[1].response.etag).toBe('W/"1"');
    const obs = await t.api.get(`/fhir/Observation/${obsId}`);
    expect(obs.body.subject.reference).toBe(`Patient/${patientId}`);
    expect(obs.body.performer[0].reference).toBe(`Patient/${patientId}`);
    expect(obs.body.extension[0].valueReference.reference).toBe(`Patient/${patientId}`);
    const [{ compartments }] = await t.db.query(`SELECT compartments FROM resource WHERE resource_type = 'Observation' AND id = $1`, [obsId]);
    expect(compartments).toEqual([patientId]);
  });

  it('rolls back everything when one entry fails, and names the entry', async () => {
    const existing = await createPatient('tx-rollback');
    const before = await counts();
    const res = await post({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { resource: hiePatient({ identifier: [{ system: SYS, value: 'tx-never' }] }), request: { method: 'POST', url: 'Patient' } },
        {
          resource: hiePatient({ id: existing, identifier: [{ system: SYS, value: 'tx-rollback' }], gender: 'male' }),
          request: { method: 'PUT', url: `Patient/${existing}` },
        },
        { request: { method: 'DELETE', url: `Patient/${existing}` } },
        { resource: { resourceType: 'Observation', status: 'final' }, request: { method: 'POST', url: 'Observation' } },
      ].filter((_, n) => n !== 2),
    });
    expect(res.status).toBe(400);
    expect(res.body.resourceType).toBe('OperationOutcome');
    expect(res.body.issue[0].diagnostics).toMatch(/^Bundle\.entry\[2\]: /);
    expect(res.body.issue[0].expression).toContain('Bundle.entry[2]');
    expect(await counts()).toEqual(before);
    const current = await t.api.get(`/fhir/Patient/${existing}`);
    expect(current.body.meta.versionId).toBe('1');
    expect(current.body.gender).toBe('female');
  });

  it('resolves a conditional reference that matches exactly one resource, and rejects 0 or many with 412', async () => {
    const one = await createPatient('cond-one');
    await createPatient('cond-many');
    await createPatient('cond-many');
    const observation = (reference: string) => ({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        {
          resource: { resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference } },
          request: { method: 'POST', url: 'Observation' },
        },
      ],
    });
    const ok = await post(observation(`Patient?identifier=${SYS}|cond-one`));
    expect(ok.status).toBe(200);
    const obsId = /Observation\/([^/]+)\//.exec(ok.body.entry[0].response.location)![1];
    expect((await t.api.get(`/fhir/Observation/${obsId}`)).body.subject.reference).toBe(`Patient/${one}`);

    const before = await counts();
    const none = await post(observation(`Patient?identifier=${SYS}|cond-none`));
    expect(none.status).toBe(412);
    expect(none.body.issue[0].diagnostics).toMatch(/^Bundle\.entry\[0\]: .*matches 0 resources/);
    const many = await post(observation(`Patient?identifier=${SYS}|cond-many`));
    expect(many.status).toBe(412);
    expect(many.body.issue[0].code).toBe('multiple-matches');
    expect(await counts()).toEqual(before);
  });

  it('resolves a conditional reference to a resource created in the same Bundle', async () => {
    const res = await post({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { fullUrl: 'urn:uuid:0e7b0f4a-1111-4c59-9a3c-000000000001', resource: hiePatient({ identifier: [{ system: SYS, value: 'in-bundle' }] }), request: { method: 'POST', url: 'Patient' } },
        {
          resource: { resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: `Patient?identifier=${SYS}|in-bundle` } },
          request: { method: 'POST', url: 'Observation' },
        },
      ],
    });
    expect(res.status).toBe(200);
    const patientId = /Patient\/([^/]+)\//.exec(res.body.entry[0].response.location)![1];
    const obsId = /Observation\/([^/]+)\//.exec(res.body.entry[1].response.location)![1];
    expect((await t.api.get(`/fhir/Observation/${obsId}`)).body.subject.reference).toBe(`Patient/${patientId}`);
  });

  it('a rerun after a write conflict plans afresh from the body as sent: its references point at the rerun\'s ids', async () => {
    // The first run fails at the Observation's pre-commit after its references were rewritten in
    // place to that run's Patient id; the rerun must see the urn:uuid and the conditional reference again.
    conflict.control.armed = 1;
    conflict.control.fired = 0;
    const patientUrn = 'urn:uuid:0e7b0f4a-2222-4c59-9a3c-000000000002';
    const res = await post({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { fullUrl: patientUrn, resource: hiePatient({ identifier: [{ system: SYS, value: 'rerun' }] }), request: { method: 'POST', url: 'Patient' } },
        {
          resource: {
            resourceType: 'Observation',
            status: 'final',
            code: { text: 'x' },
            subject: { reference: patientUrn },
            performer: [{ reference: `Patient?identifier=${SYS}|rerun` }],
          },
          request: { method: 'POST', url: 'Observation' },
        },
      ],
    });
    expect(res.status).toBe(200);
    expect(conflict.control.fired).toBe(1);
    const patientId = /Patient\/([^/]+)\//.exec(res.body.entry[0].response.location)![1];
    const obsId = /Observation\/([^/]+)\//.exec(res.body.entry[1].response.location)![1];
    const obs = (await t.api.get(`/fhir/Observation/${obsId}`)).body;
    expect(obs.subject.reference).toBe(`Patient/${patientId}`);
    expect(obs.performer[0].reference).toBe(`Patient/${patientId}`);
    const [{ n }] = await t.db.query(`SELECT count(*)::int AS n FROM resource WHERE resource_type = 'Patient' AND content->'identifier' @> $1::jsonb`, [
      JSON.stringify([{ system: SYS, value: 'rerun' }]),
    ]);
    expect(n).toBe(1);
  });

  it('ifNoneExist in a transaction reuses the existing resource and points references at it', async () => {
    const existing = await createPatient('if-none-exist');
    const before = await counts();
    const res = await post({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        {
          fullUrl: 'urn:uuid:0e7b0f4a-2222-4c59-9a3c-000000000002',
          resource: hiePatient({ identifier: [{ system: SYS, value: 'if-none-exist' }] }),
          request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=${SYS}|if-none-exist` },
        },
        {
          resource: { resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: 'urn:uuid:0e7b0f4a-2222-4c59-9a3c-000000000002' } },
          request: { method: 'POST', url: 'Observation' },
        },
      ],
    });
    expect(res.status).toBe(200);
    expect(res.body.entry[0].response.status).toBe('200 OK');
    expect(res.body.entry[0].response.etag).toBe('W/"1"');
    const obsId = /Observation\/([^/]+)\//.exec(res.body.entry[1].response.location)![1];
    expect((await t.api.get(`/fhir/Observation/${obsId}`)).body.subject.reference).toBe(`Patient/${existing}`);
    expect(await counts()).toEqual({ resources: before.resources + 1, versions: before.versions + 1 });
  });

  it('two concurrent transactions with the same ifNoneExist leave exactly one resource', async () => {
    const bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        {
          resource: hiePatient({ identifier: [{ system: SYS, value: 'race-1' }] }),
          request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=${SYS}|race-1` },
        },
      ],
    };
    const results = await Promise.all(Array.from({ length: 6 }, () => post(bundle)));
    expect(results.map((r) => r.status)).toEqual(Array(6).fill(200));
    expect(results.map((r) => r.body.entry[0].response.status).sort()).toEqual(['200 OK', '200 OK', '200 OK', '200 OK', '200 OK', '201 Created']);
    const rows = await t.db.query(`SELECT id FROM resource WHERE resource_type = 'Patient' AND content @> $1::jsonb`, [
      JSON.stringify({ identifier: [{ system: SYS, value: 'race-1' }] }),
    ]);
    expect(rows).toHaveLength(1);
  });

  it('processes in the spec order: deletes, creates, updates, then reads, answering in request order', async () => {
    const updated = await createPatient('order-update');
    const deleted = await createPatient('order-gone');
    const q = (s: string) => encodeURIComponent(s);
    // Sent in reverse order. Each later kind can see what an earlier kind did only if the server
    // follows the spec order (http.html#trules): DELETE, POST, PUT/PATCH, GET/HEAD. (A read after a
    // delete is the next test.)
    const res = await post({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        // Read after create: finds the Patient the POST below creates.
        { request: { method: 'GET', url: `Patient?identifier=${q(`${SYS}|order-new`)}` } },
        // Read after update: sees the new gender.
        { request: { method: 'GET', url: `Patient/${updated}` } },
        { resource: hiePatient({ id: updated, identifier: [{ system: SYS, value: 'order-update' }], gender: 'female' }), request: { method: 'PUT', url: `Patient/${updated}` } },
        { resource: hiePatient({ identifier: [{ system: SYS, value: 'order-new' }] }), request: { method: 'POST', url: 'Patient' } },
        { request: { method: 'DELETE', url: `Patient/${deleted}` } },
      ],
    });
    expect({ status: res.status, issue: res.body.issue }).toEqual({ status: 200, issue: undefined });
    expect(res.body.entry.map((e: { response: { status: string } }) => e.response.status.split(' ')[0])).toEqual(['200', '200', '200', '201', '200']);
    const search = res.body.entry[0].resource;
    expect(search.entry.map((e: { resource: { identifier: { value: string }[] } }) => e.resource.identifier[0].value)).toEqual(['order-new']);
    expect(res.body.entry[1].resource.gender).toBe('female');
    expect((await t.api.get(`/fhir/Patient/${deleted}`)).status).toBe(410);
  });

  it('a read fails when the delete it follows in spec order removed its target, and rolls back the delete', async () => {
    const doomed = await createPatient('order-delete');
    const res = await post({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { request: { method: 'GET', url: `Patient/${doomed}` } },
        { request: { method: 'DELETE', url: `Patient/${doomed}` } },
      ],
    });
    // The read runs after the delete, so the transaction fails on the read (410) and rolls back the delete.
    expect(res.status).toBe(410);
    expect(res.body.issue[0].diagnostics).toMatch(/^Bundle\.entry\[0\]: /);
    expect((await t.api.get(`/fhir/Patient/${doomed}`)).status).toBe(200);
  });

  it('rejects duplicate fullUrls and two writes to one resource', async () => {
    const id = await createPatient('dup');
    const dupUrl = await post({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { fullUrl: 'urn:uuid:0e7b0f4a-3333-4c59-9a3c-000000000003', resource: hiePatient(), request: { method: 'POST', url: 'Patient' } },
        { fullUrl: 'urn:uuid:0e7b0f4a-3333-4c59-9a3c-000000000003', resource: hiePatient(), request: { method: 'POST', url: 'Patient' } },
      ],
    });
    expect(dupUrl.status).toBe(400);
    expect(dupUrl.body.issue[0].code).toBe('duplicate');
    const dupTarget = await post({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { resource: hiePatient({ id }), request: { method: 'PUT', url: `Patient/${id}` } },
        { request: { method: 'DELETE', url: `Patient/${id}` } },
      ],
    });
    expect(dupTarget.status).toBe(400);
    expect(dupTarget.body.issue[0].diagnostics).toMatch(/both write Patient\//);
  });

  it('batch: entries succeed or fail on their own', async () => {
    const before = await counts();
    const res = await post({
      resourceType: 'Bundle',
      type: 'batch',
      entry: [
        { resource: hiePatient({ identifier: [{ system: SYS, value: 'batch-ok' }] }), request: { method: 'POST', url: 'Patient' } },
        { resource: hiePatient({ gender: 'nope' }), request: { method: 'POST', url: 'Patient' } },
        { request: { method: 'GET', url: 'Patient/batch-missing' } },
        { request: { method: 'DELETE', url: 'Patient/batch-missing' } },
      ],
    });
    expect(res.status).toBe(200);
    expect(res.body.type).toBe('batch-response');
    // Deleting a resource that is not there answers as for one the client may not change (write rule).
    expect(res.body.entry.map((e: { response: { status: string } }) => e.response.status)).toEqual(['201 Created', '400', '404', '403']);
    expect(res.body.entry[1].response.outcome.issue[0].code).toBe('code-invalid');
    expect(res.body.entry[3].response.outcome.issue[0]).toMatchObject({ code: 'forbidden', diagnostics: 'Patient/batch-missing is not a resource this client may change' });
    expect(await counts()).toEqual({ resources: before.resources + 1, versions: before.versions + 1 });
  });

  it('rejects a Bundle that is not batch or transaction', async () => {
    const res = await post({ resourceType: 'Bundle', type: 'collection', entry: [] });
    expect(res.status).toBe(400);
    expect(res.body.issue[0].expression).toEqual(['Bundle.type']);
  });

  it('conditional create (If-None-Exist), update and delete over REST', async () => {
    const first = await t.api
      .post('/fhir/Patient')
      .set('Content-Type', FHIR_JSON)
      .set('If-None-Exist', `identifier=${SYS}|rest-cond`)
      .send(hiePatient({ identifier: [{ system: SYS, value: 'rest-cond' }] }));
    expect(first.status).toBe(201);
    const again = await t.api
      .post('/fhir/Patient')
      .set('Content-Type', FHIR_JSON)
      .set('If-None-Exist', `identifier=${SYS}|rest-cond`)
      .send(hiePatient({ identifier: [{ system: SYS, value: 'rest-cond' }] }));
    expect(again.status).toBe(200);
    expect(again.body.id).toBe(first.body.id);

    const updated = await t.api
      .put(`/fhir/Patient?identifier=${encodeURIComponent(`${SYS}|rest-cond`)}`)
      .set('Content-Type', FHIR_JSON)
      .send(hiePatient({ identifier: [{ system: SYS, value: 'rest-cond' }], gender: 'male' }));
    expect(updated.status).toBe(200);
    expect(updated.body.id).toBe(first.body.id);
    expect(updated.headers.etag).toBe('W/"2"');

    const created = await t.api
      .put(`/fhir/Patient?identifier=${encodeURIComponent(`${SYS}|rest-cond-new`)}`)
      .set('Content-Type', FHIR_JSON)
      .send(hiePatient({ identifier: [{ system: SYS, value: 'rest-cond-new' }] }));
    expect(created.status).toBe(201);

    await createPatient('rest-cond-new');
    const ambiguous = await t.api
      .put(`/fhir/Patient?identifier=${encodeURIComponent(`${SYS}|rest-cond-new`)}`)
      .set('Content-Type', FHIR_JSON)
      .send(hiePatient());
    expect(ambiguous.status).toBe(412);

    // Conditional delete is single-match by default: two matches answer 412 and delete nothing.
    const refused = await t.api.delete(`/fhir/Patient?identifier=${encodeURIComponent(`${SYS}|rest-cond-new`)}`);
    expect(refused.status).toBe(412);
    expect(refused.body.issue[0]).toMatchObject({ code: 'multiple-matches', diagnostics: 'Conditional delete criteria match 2 resources; this server deletes only a single match' });
    expect((await t.api.get(`/fhir/Patient/${created.body.id}`)).status).toBe(200);

    const deleted = await t.api.delete(`/fhir/Patient?identifier=${encodeURIComponent(`${SYS}|rest-cond`)}`);
    expect(deleted.status).toBe(200);
    expect(deleted.body.issue[0].diagnostics).toBe('Deleted 1 Patient resource(s)');
    expect((await t.api.get(`/fhir/Patient/${first.body.id}`)).status).toBe(410);
  });
});
