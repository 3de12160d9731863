import { FHIR_JSON, hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

describe('optimistic concurrency', () => {
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

  it('20 concurrent PUTs with the same If-Match: exactly one succeeds, 19 get 412', async () => {
    const id = await create();
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, n) =>
        t.api
          .put(`/fhir/Patient/${id}`)
          .set('Content-Type', FHIR_JSON)
          .set('If-Match', 'W/"1"')
          .send(hiePatient({ id, birthDate: `1990-01-${String(n + 1).padStart(2, '0')}` })),
      ),
    );
    const statuses = results.map((r) => r.status).sort();
    expect(statuses.filter((s) => s === 200)).toHaveLength(1);
    expect(statuses.filter((s) => s === 412)).toHaveLength(19);
    const versions: { version_id: number }[] = await t.db.query(
      `SELECT version_id FROM resource_history WHERE resource_type = 'Patient' AND id = $1 ORDER BY version_id`,
      [id],
    );
    expect(versions.map((v) => v.version_id)).toEqual([1, 2]);
  });

  it('20 concurrent PUTs without If-Match serialize with no lost version numbers', async () => {
    const id = await create();
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, n) =>
        t.api
          .put(`/fhir/Patient/${id}`)
          .set('Content-Type', FHIR_JSON)
          .send(hiePatient({ id, birthDate: `1991-02-${String(n + 1).padStart(2, '0')}` })),
      ),
    );
    expect(results.map((r) => r.status)).toEqual(Array(20).fill(200));
    const etags = results.map((r) => r.headers.etag).sort((a, b) => Number(a.slice(3, -1)) - Number(b.slice(3, -1)));
    expect(etags).toEqual(Array.from({ length: 20 }, (_, n) => `W/"${n + 2}"`));
    const [{ n, max }] = await t.db.query(
      `SELECT count(*)::int AS n, max(version_id) AS max FROM resource_history WHERE resource_type = 'Patient' AND id = $1`,
      [id],
    );
    expect({ n, max }).toEqual({ n: 21, max: 21 });
  });

  it('20 concurrent update-as-create PUTs of one new id leave one resource with 20 versions', async () => {
    const id = `concurrent-create-${Date.now()}`;
    const results = await Promise.all(
      Array.from({ length: 20 }, () => t.api.put(`/fhir/Patient/${id}`).set('Content-Type', FHIR_JSON).send(hiePatient({ id }))),
    );
    const statuses = results.map((r) => r.status);
    expect(statuses.filter((s) => s === 201)).toHaveLength(1);
    expect(statuses.filter((s) => s === 200)).toHaveLength(19);
    const [{ n }] = await t.db.query(`SELECT count(*)::int AS n FROM resource_history WHERE id = $1`, [id]);
    expect(n).toBe(20);
  });
});
