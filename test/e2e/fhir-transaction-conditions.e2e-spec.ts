import { InteractionExecutor } from '../../src/pipeline/interaction.executor';
import { postTransaction } from '../support/bundles';
import { FHIR_JSON, hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

type EntryResponse = { response: { status: string; etag?: string; outcome?: { issue: { code: string; diagnostics: string }[] } }; resource?: { id: string; meta: { versionId: string } } };

/** request.ifMatch / request.ifNoneMatch inside transaction and batch entries, and batch entries running concurrently. */
describe('conditional entries (ifMatch, ifNoneMatch) and concurrent batch entries', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t.close());

  /** Stores Patient/<id> at version `versions` (create, then updates). */
  async function patientAt(id: string, versions: number): Promise<void> {
    for (let v = 1; v <= versions; v++) {
      const res = await t.api.put(`/fhir/Patient/${id}`).set('Content-Type', FHIR_JSON).send(hiePatient({ id, active: v % 2 === 0 }));
      expect(res.headers.etag).toBe(`W/"${v}"`);
    }
  }
  async function stored(): Promise<{ resources: number; versions: number }> {
    // The file has its own database, so whole-table counts see only this file's writes.
    const [row] = await t.db.query(`SELECT (SELECT count(*)::int FROM resource) AS resources, (SELECT count(*)::int FROM resource_history) AS versions`);
    return row;
  }
  const put = (id: string, ifMatch?: string, extra: Record<string, unknown> = {}) => ({
    resource: hiePatient({ id, ...extra }),
    request: { method: 'PUT', url: `Patient/${id}`, ...(ifMatch ? { ifMatch } : {}) },
  });

  it('a transaction applies updates whose ifMatch names the current version', async () => {
    await patientAt('cond-a', 1);
    await patientAt('cond-b', 2);
    const res = await postTransaction(t.api, [put('cond-a', 'W/"1"'), put('cond-b', 'W/"2"')]);
    expect(res.status).toBe(200);
    expect(res.body.entry.map((e: EntryResponse) => [e.response.status, e.response.etag])).toEqual([
      ['200 OK', 'W/"2"'],
      ['200 OK', 'W/"3"'],
    ]);
  });

  it('a stale ifMatch fails the whole transaction with 412 naming the entry, and nothing is stored', async () => {
    await patientAt('cond-c', 2);
    const before = await stored();
    const res = await postTransaction(t.api, [
      { resource: hiePatient({ identifier: [{ system: 'urn:cond', value: 'new-one' }] }), request: { method: 'POST', url: 'Patient' } },
      put('cond-c', 'W/"1"', { gender: 'male' }),
    ]);
    expect(res.status).toBe(412);
    expect(res.body.resourceType).toBe('OperationOutcome');
    expect(res.body.issue[0].code).toBe('conflict');
    expect(res.body.issue[0].diagnostics).toContain('If-Match version 1 does not match the current version of Patient/cond-c');
    expect(res.body.issue[0].expression).toEqual(['Bundle.entry[1]']);
    expect(await stored()).toEqual(before);
    expect((await t.api.get('/fhir/Patient/cond-c')).body).toMatchObject({ gender: 'female', meta: { versionId: '2' } });
  });

  it('DELETE of X and a POST whose ifNoneExist matches only X: deletes run first, so the POST creates (201, a new id)', async () => {
    const identifier = { system: 'urn:cond', value: 'replaced-in-one-transaction' };
    await t.api.put('/fhir/Patient/cond-del').set('Content-Type', FHIR_JSON).send(hiePatient({ id: 'cond-del', identifier: [identifier] })).expect(201);
    const criteria = `identifier=${encodeURIComponent(`${identifier.system}|${identifier.value}`)}`;
    for (const del of ['Patient/cond-del', `Patient?${criteria}`]) {
      // The POST comes first in the Bundle; processing order is DELETE, POST (http.html#trules).
      const res = await postTransaction(t.api, [
        { fullUrl: 'urn:uuid:4f7c4a52-4e0b-4a53-9d7e-0c0d7a1e0001', resource: hiePatient({ identifier: [identifier], gender: 'male' }), request: { method: 'POST', url: 'Patient', ifNoneExist: criteria } },
        { request: { method: 'DELETE', url: del } },
      ]);
      expect({ status: res.status, statuses: res.body.entry?.map((e: EntryResponse) => e.response.status), issue: res.body.issue }).toEqual({
        status: 200,
        statuses: ['201 Created', '200 OK'],
        issue: undefined,
      });
      const createdId = /Patient\/([^/]+)/.exec(res.body.entry[0].response.location)![1];
      expect(createdId).not.toBe('cond-del');
      expect((await t.api.get('/fhir/Patient/cond-del')).status).toBe(410);
      const found = await t.api.get(`/fhir/Patient?${criteria}`);
      expect(found.body.entry.map((e: { resource: { id: string; gender: string } }) => [e.resource.id, e.resource.gender])).toEqual([[createdId, 'male']]);
      // The next round deletes the Patient just created, by its criteria or as Patient/cond-del again (restored).
      await t.api.put('/fhir/Patient/cond-del').set('Content-Type', FHIR_JSON).send(hiePatient({ id: 'cond-del', identifier: [identifier] })).expect(201);
      await t.api.delete(`/fhir/Patient/${createdId}`).expect(200);
    }
  });

  it('a stale ifMatch on a DELETE entry fails the transaction too; the current one deletes', async () => {
    await patientAt('cond-d', 2);
    const before = await stored();
    // The failing DELETE is the second entry, after a create that must not be kept either.
    const stale = await postTransaction(t.api, [put('cond-d-other'), { request: { method: 'DELETE', url: 'Patient/cond-d', ifMatch: 'W/"1"' } }]);
    expect(stale.status).toBe(412);
    expect(stale.body.resourceType).toBe('OperationOutcome');
    expect(stale.body.issue).toHaveLength(1);
    expect(stale.body.issue[0]).toMatchObject({ severity: 'error', code: 'conflict', expression: ['Bundle.entry[1]'] });
    expect(stale.body.issue[0].diagnostics).toContain('If-Match version 1 does not match the current version of Patient/cond-d');
    expect(await stored()).toEqual(before);
    expect((await t.api.get('/fhir/Patient/cond-d')).body).toMatchObject({ id: 'cond-d', meta: { versionId: '2' } });
    expect((await t.api.get('/fhir/Patient/cond-d-other')).status).toBe(404);
    const current = await postTransaction(t.api, [{ request: { method: 'DELETE', url: 'Patient/cond-d', ifMatch: 'W/"2"' } }]);
    expect(current.status).toBe(200);
    expect((await t.api.get('/fhir/Patient/cond-d')).status).toBe(410);
  });

  it('a GET entry with ifNoneMatch of the current version answers 304 without the resource; an older one reads it', async () => {
    await patientAt('cond-e', 2);
    const res = await postTransaction(t.api, [
      { request: { method: 'GET', url: 'Patient/cond-e', ifNoneMatch: 'W/"2"' } },
      { request: { method: 'GET', url: 'Patient/cond-e', ifNoneMatch: 'W/"1"' } },
    ]);
    expect(res.status).toBe(200);
    const [same, older] = res.body.entry as EntryResponse[];
    expect(same.response.status).toBe('304 Not Modified');
    expect(same.resource).toBeUndefined();
    expect(older.response.status).toBe('200 OK');
    expect(older.resource).toMatchObject({ id: 'cond-e', meta: { versionId: '2' } });
  });

  it('in a batch, a stale ifMatch fails only its own entry', async () => {
    await patientAt('cond-f', 2);
    await patientAt('cond-g', 1);
    const res = await t.api
      .post('/fhir')
      .set('Content-Type', FHIR_JSON)
      .send({ resourceType: 'Bundle', type: 'batch', entry: [put('cond-f', 'W/"1"', { gender: 'male' }), put('cond-g', 'W/"1"', { gender: 'male' })] });
    expect(res.status).toBe(200);
    const [stale, current] = res.body.entry as EntryResponse[];
    expect(stale.response.status).toMatch(/^412/);
    expect(stale.response.outcome!.issue[0].diagnostics).toContain('If-Match version 1 does not match');
    expect(current.response.status).toBe('200 OK');
    expect((await t.api.get('/fhir/Patient/cond-f')).body).toMatchObject({ gender: 'female', meta: { versionId: '2' } });
    expect((await t.api.get('/fhir/Patient/cond-g')).body).toMatchObject({ gender: 'male', meta: { versionId: '2' } });
  });

  it('runs batch entries concurrently, at most four at a time, and answers in request order', async () => {
    for (let n = 0; n < 8; n++) await patientAt(`cond-batch-${n}`, 1);
    const executor = t.app.get(InteractionExecutor);
    const execute = executor.execute.bind(executor);
    let inFlight = 0;
    let most = 0;
    const spy = jest.spyOn(executor, 'execute').mockImplementation(async (...args) => {
      inFlight++;
      most = Math.max(most, inFlight);
      try {
        // Long enough that entries run one after another would never overlap.
        await new Promise((r) => setTimeout(r, 150));
        return await execute(...args);
      } finally {
        inFlight--;
      }
    });
    try {
      const res = await t.api
        .post('/fhir')
        .set('Content-Type', FHIR_JSON)
        .send({ resourceType: 'Bundle', type: 'batch', entry: Array.from({ length: 8 }, (_, n) => ({ request: { method: 'GET', url: `Patient/cond-batch-${n}` } })) });
      expect(res.status).toBe(200);
      expect(res.body.entry.map((e: EntryResponse) => e.resource!.id)).toEqual(Array.from({ length: 8 }, (_, n) => `cond-batch-${n}`));
      expect(spy).toHaveBeenCalledTimes(8);
      expect(most).toBe(4);
    } finally {
      spy.mockRestore();
    }
  });
});
