import request from 'supertest';
import { createTestApp, TestApp } from '../support/test-app';

const FHIR_JSON = 'application/fhir+json';

function patient(extra: Record<string, unknown> = {}) {
  return {
    resourceType: 'Patient',
    identifier: [{ system: 'http://hospital-a.example.org/mrn', value: 'MRN-1' }],
    name: [{ family: 'Müller', given: ['Anna', 'Lena'] }],
    gender: 'female',
    birthDate: '1980-04-01',
    ...extra,
  };
}

describe('FHIR REST core', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(async () => {
    await t.close();
  });

  it('creates, reads, vreads, updates, lists history and deletes a Patient', async () => {
    const created = await request(t.http).post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(patient({ id: 'ignored' }));
    expect(created.status).toBe(201);
    expect(created.headers['content-type']).toBe('application/fhir+json; charset=utf-8');
    expect(created.headers.etag).toBe('W/"1"');
    const id = created.body.id as string;
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(created.headers.location).toBe(`http://localhost:8080/fhir/Patient/${id}/_history/1`);
    expect(created.body.meta.versionId).toBe('1');
    expect(created.headers['last-modified']).toBe(new Date(created.body.meta.lastUpdated).toUTCString());

    const read = await request(t.http).get(`/fhir/Patient/${id}`);
    expect(read.status).toBe(200);
    expect(read.body.name[0].family).toBe('Müller');
    expect(read.headers.etag).toBe('W/"1"');

    const updated = await request(t.http)
      .put(`/fhir/Patient/${id}`)
      .set('Content-Type', FHIR_JSON)
      .set('If-Match', 'W/"1"')
      .send(patient({ id, birthDate: '1980-04-02' }));
    expect(updated.status).toBe(200);
    expect(updated.headers.etag).toBe('W/"2"');

    const v1 = await request(t.http).get(`/fhir/Patient/${id}/_history/1`);
    expect(v1.status).toBe(200);
    expect(v1.body.birthDate).toBe('1980-04-01');

    const stale = await request(t.http)
      .put(`/fhir/Patient/${id}`)
      .set('Content-Type', FHIR_JSON)
      .set('If-Match', 'W/"1"')
      .send(patient({ id }));
    expect(stale.status).toBe(412);
    expect(stale.body.issue[0].code).toBe('conflict');

    const history = await request(t.http).get(`/fhir/Patient/${id}/_history`);
    expect(history.status).toBe(200);
    expect(history.body.type).toBe('history');
    expect(history.body.total).toBe(2);
    expect(history.body.entry.map((e: { response: { etag: string } }) => e.response.etag)).toEqual(['W/"2"', 'W/"1"']);

    const del = await request(t.http).delete(`/fhir/Patient/${id}`);
    expect(del.status).toBe(200);
    const gone = await request(t.http).get(`/fhir/Patient/${id}`);
    expect(gone.status).toBe(410);
    expect(gone.body.issue[0].code).toBe('deleted');
  });

  it('answers metadata with a CapabilityStatement for 144 types', async () => {
    const res = await request(t.http).get('/fhir/metadata');
    expect(res.status).toBe(200);
    expect(res.body.resourceType).toBe('CapabilityStatement');
    expect(res.body.fhirVersion).toBe('4.0.1');
    expect(res.body.rest[0].resource).toHaveLength(144);
  });
});
