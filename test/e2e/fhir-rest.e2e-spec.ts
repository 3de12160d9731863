import { FHIR_JSON, hiePatient as patient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

describe('FHIR REST core', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(async () => {
    await t.close();
  });

  it('creates, reads, vreads, updates, lists history and deletes a Patient', async () => {
    const created = await t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(patient({ id: 'ignored' }));
    expect(created.status).toBe(201);
    expect(created.headers['content-type']).toBe('application/fhir+json; charset=utf-8');
    expect(created.headers.etag).toBe('W/"1"');
    const id = created.body.id as string;
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(created.headers.location).toBe(`http://localhost:8080/fhir/Patient/${id}/_history/1`);
    expect(created.body.meta.versionId).toBe('1');
    expect(created.headers['last-modified']).toBe(new Date(created.body.meta.lastUpdated).toUTCString());

    const read = await t.api.get(`/fhir/Patient/${id}`);
    expect(read.status).toBe(200);
    expect(read.body.name[0].family).toBe('Müller');
    expect(read.headers.etag).toBe('W/"1"');

    const updated = await t.api
      .put(`/fhir/Patient/${id}`)
      .set('Content-Type', FHIR_JSON)
      .set('If-Match', 'W/"1"')
      .send(patient({ id, birthDate: '1980-04-02' }));
    expect(updated.status).toBe(200);
    expect(updated.headers.etag).toBe('W/"2"');

    const v1 = await t.api.get(`/fhir/Patient/${id}/_history/1`);
    expect(v1.status).toBe(200);
    expect(v1.body.birthDate).toBe('1980-04-01');

    const stale = await t.api
      .put(`/fhir/Patient/${id}`)
      .set('Content-Type', FHIR_JSON)
      .set('If-Match', 'W/"1"')
      .send(patient({ id }));
    expect(stale.status).toBe(412);
    expect(stale.body.issue[0].code).toBe('conflict');

    const history = await t.api.get(`/fhir/Patient/${id}/_history`);
    expect(history.status).toBe(200);
    expect(history.body.type).toBe('history');
    expect(history.body.total).toBe(2);
    expect(history.body.entry.map((e: { response: { etag: string } }) => e.response.etag)).toEqual(['W/"2"', 'W/"1"']);

    const del = await t.api.delete(`/fhir/Patient/${id}`);
    expect(del.status).toBe(200);
    const gone = await t.api.get(`/fhir/Patient/${id}`);
    expect(gone.status).toBe(410);
    expect(gone.body.issue[0].code).toBe('deleted');
  });

  it('answers metadata with a CapabilityStatement for 144 types', async () => {
    const res = await t.api.get('/fhir/metadata');
    expect(res.status).toBe(200);
    expect(res.body.resourceType).toBe('CapabilityStatement');
    expect(res.body.fhirVersion).toBe('4.0.1');
    expect(res.body.rest[0].resource).toHaveLength(144);
  });

  it('honours Prefer: return=minimal and return=OperationOutcome', async () => {
    const minimal = await t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).set('Prefer', 'return=minimal').send(patient());
    expect(minimal.status).toBe(201);
    expect(minimal.text).toBe('');
    expect(minimal.headers.location).toMatch(/\/fhir\/Patient\/[0-9a-f-]{36}\/_history\/1$/);
    const outcome = await t.api
      .post('/fhir/Patient')
      .set('Content-Type', FHIR_JSON)
      .set('Prefer', 'return=OperationOutcome')
      .send(patient());
    expect(outcome.status).toBe(201);
    expect(outcome.body.resourceType).toBe('OperationOutcome');
    expect(outcome.body.issue[0].severity).toBe('information');
  });

  it('supports _summary, _elements and _pretty on read', async () => {
    const created = await t.api
      .post('/fhir/Patient')
      .set('Content-Type', FHIR_JSON)
      .send(patient({ text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">Anna</div>' }, maritalStatus: { text: 'married' } }));
    const id = created.body.id;
    const summary = await t.api.get(`/fhir/Patient/${id}?_summary=true`);
    expect(summary.status).toBe(200);
    expect(Object.keys(summary.body).sort()).toEqual(['birthDate', 'gender', 'id', 'identifier', 'meta', 'name', 'resourceType']);
    expect(summary.body.meta.tag).toContainEqual(expect.objectContaining({ code: 'SUBSETTED' }));
    const data = await t.api.get(`/fhir/Patient/${id}?_summary=data`);
    expect(data.body.text).toBeUndefined();
    expect(data.body.maritalStatus).toEqual({ text: 'married' });
    const text = await t.api.get(`/fhir/Patient/${id}?_summary=text`);
    expect(Object.keys(text.body).sort()).toEqual(['id', 'meta', 'resourceType', 'text']);
    const elements = await t.api.get(`/fhir/Patient/${id}?_elements=gender,birthDate`);
    expect(Object.keys(elements.body).sort()).toEqual(['birthDate', 'gender', 'id', 'meta', 'resourceType']);
    const pretty = await t.api.get(`/fhir/Patient/${id}?_pretty=true`);
    expect(pretty.text).toContain('\n  "resourceType": "Patient"');
  });

  it('update-as-create with a client id answers 201, and a deleted resource can be re-created', async () => {
    const id = `client-chosen-${Date.now()}`;
    const created = await t.api.put(`/fhir/Patient/${id}`).set('Content-Type', FHIR_JSON).send(patient({ id }));
    expect(created.status).toBe(201);
    expect(created.headers.location).toBe(`http://localhost:8080/fhir/Patient/${id}/_history/1`);
    expect((await t.api.delete(`/fhir/Patient/${id}`)).status).toBe(200);
    const again = await t.api.delete(`/fhir/Patient/${id}`);
    expect(again.status).toBe(200);
    expect(again.body.issue[0].diagnostics).toBe(`Patient/${id} was not present`);
    const gone = await t.api.get(`/fhir/Patient/${id}`);
    expect(gone.status).toBe(410);
    expect(gone.headers.etag).toBe('W/"2"');
    const recreated = await t.api.put(`/fhir/Patient/${id}`).set('Content-Type', FHIR_JSON).send(patient({ id }));
    expect(recreated.status).toBe(201);
    expect(recreated.headers.etag).toBe('W/"3"');
    const history = await t.api.get(`/fhir/Patient/${id}/_history`);
    expect(history.body.entry.map((e: { request: { method: string } }) => e.request.method)).toEqual(['PUT', 'DELETE', 'PUT']);
    expect(history.body.entry[1].resource).toBeUndefined();
    expect((await t.api.get(`/fhir/Patient/${id}/_history/2`)).status).toBe(410);
    expect((await t.api.get(`/fhir/Patient/${id}/_history/9`)).status).toBe(404);
  });

  it('answers 404 for an unknown id', async () => {
    const res = await t.api.get('/fhir/Patient/does-not-exist');
    expect(res.status).toBe(404);
    expect(res.body.issue[0].code).toBe('not-found');
  });

  it('pages type and system history with _count, _since and _at', async () => {
    const marker = `hist-${Date.now()}`;
    const ids: string[] = [];
    for (let n = 0; n < 5; n++) {
      const r = await t.api.post('/fhir/Practitioner').set('Content-Type', FHIR_JSON).send({ resourceType: 'Practitioner', name: [{ family: marker }] });
      ids.push(r.body.id);
    }
    const since = (await t.api.get(`/fhir/Practitioner/${ids[0]}`)).body.meta.lastUpdated;
    const first = await t.api.get(`/fhir/Practitioner/_history?_count=2&_since=${encodeURIComponent(since)}`);
    expect(first.status).toBe(200);
    expect(first.body.entry.map((e: { resource: { id: string } }) => e.resource.id)).toEqual([ids[4], ids[3]]);
    const next = first.body.link.find((l: { relation: string }) => l.relation === 'next').url as string;
    expect(next).toMatch(/^http:\/\/localhost:8080\/fhir\/Practitioner\/_history\?/);
    const second = await t.api.get(next.replace('http://localhost:8080', ''));
    expect(second.body.entry.map((e: { resource: { id: string } }) => e.resource.id)).toEqual([ids[2], ids[1]]);
    const third = await t.api.get(second.body.link.find((l: { relation: string }) => l.relation === 'next').url.replace('http://localhost:8080', ''));
    expect(third.body.entry.map((e: { resource: { id: string } }) => e.resource.id)).toEqual([ids[0]]);
    expect(third.body.link.find((l: { relation: string }) => l.relation === 'next')).toBeUndefined();

    const system = await t.api.get(`/fhir/_history?_count=3`);
    expect(system.status).toBe(200);
    expect(system.body.type).toBe('history');
    expect(system.body.entry).toHaveLength(3);

    // _at: the version current at that instant; the update made after it is not listed.
    const at = new Date().toISOString();
    await new Promise((r) => setTimeout(r, 5));
    await t.api.put(`/fhir/Practitioner/${ids[0]}`).set('Content-Type', FHIR_JSON).send({ resourceType: 'Practitioner', id: ids[0], name: [{ family: `${marker}-changed` }] });
    const atRes = await t.api.get(`/fhir/Practitioner/${ids[0]}/_history?_at=${encodeURIComponent(at)}`);
    expect(atRes.body.entry.map((e: { response: { etag: string } }) => e.response.etag)).toEqual(['W/"1"']);
  });
});
