import request from 'supertest';
import { registerTestClient } from '../support/auth';
import { FHIR_JSON } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

const RUN = `paging-${Date.now().toString(36)}`;
const TAG_Q = `_tag=${encodeURIComponent(`urn:test:run|${RUN}`)}`;

describe('search paging', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
    const entry = Array.from({ length: 1000 }, (_, n) => ({
      resource: {
        resourceType: 'Basic',
        id: `${RUN}-${String(n).padStart(4, '0')}`,
        meta: { tag: [{ system: 'urn:test:run', code: RUN }] },
        code: { text: 'paging' },
        // Many ties on the sort key, so ordering must fall back to the id.
        created: `2020-01-${String((n % 28) + 1).padStart(2, '0')}`,
      },
      request: { method: 'PUT', url: `Basic/${RUN}-${String(n).padStart(4, '0')}` },
    }));
    const res = await t.api.post('/fhir').set('Content-Type', FHIR_JSON).send({ resourceType: 'Bundle', type: 'transaction', entry });
    expect(res.status).toBe(200);
    // 1,000 conditional-free PUTs in one transaction: each statement carries (and PostgreSQL plans)
    // the consent predicate, which on a loaded 2-core machine takes this past jest's 30 s default.
  }, 120_000);
  afterAll(() => t.close());

  async function walk(first: string): Promise<{ ids: string[]; pages: number; total: number; lastBody: { link: { relation: string; url: string }[] } }> {
    const ids: string[] = [];
    let url: string | undefined = first;
    let pages = 0;
    let total = -1;
    let lastBody;
    while (url) {
      const res = await t.api.get(url.replace('http://localhost:8080', ''));
      expect(res.status).toBe(200);
      if (pages === 0) total = res.body.total;
      ids.push(...res.body.entry.map((e: { resource: { id: string } }) => e.resource.id));
      url = res.body.link.find((l: { relation: string }) => l.relation === 'next')?.url;
      lastBody = res.body;
      pages++;
    }
    return { ids, pages, total, lastBody: lastBody! };
  }

  it('walks 1,000 matches by next links, each exactly once, in _id order, with _total=accurate', async () => {
    const { ids, pages, total } = await walk(`/fhir/Basic?${TAG_Q}&_count=100&_total=accurate`);
    expect(total).toBe(1000);
    expect(pages).toBe(10);
    expect(ids).toHaveLength(1000);
    expect(new Set(ids).size).toBe(1000);
    expect(ids).toEqual([...ids].sort());
  });

  it('walks a sorted result with ties (created, then id) in sort order, and back with previous', async () => {
    const { ids, lastBody } = await walk(`/fhir/Basic?${TAG_Q}&_count=64&_sort=-created`);
    expect(ids).toHaveLength(1000);
    expect(new Set(ids).size).toBe(1000);
    const created = (id: string) => (Number(id.slice(-4)) % 28) + 1;
    for (let i = 1; i < ids.length; i++) {
      const [a, b] = [created(ids[i - 1]), created(ids[i])];
      expect(a > b || (a === b && ids[i - 1] < ids[i])).toBe(true);
    }
    const prev = lastBody.link.find((l) => l.relation === 'previous')!.url;
    const back = await t.api.get(prev.replace('http://localhost:8080', ''));
    expect(back.body.entry.map((e: { resource: { id: string } }) => e.resource.id)).toEqual(ids.slice(-64 - (1000 % 64), -(1000 % 64)));
  });

  it('includes of a type the client may not read are left out', async () => {
    const narrow = await registerTestClient(t, { role: 'hospital', scopes: ['system/Observation.rs'] });
    const p = await t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send({
      resourceType: 'Patient',
      identifier: [{ system: 'urn:test', value: RUN }],
      name: [{ family: 'Hidden' }],
      gender: 'female',
    });
    const o = await t.api
      .post('/fhir/Observation')
      .set('Content-Type', FHIR_JSON)
      .send({ resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: `Patient/${p.body.id}` } });
    const res = await request(t.http)
      .get(`/fhir/Observation?_id=${o.body.id}&_include=Observation:subject`)
      .set('Authorization', `Bearer ${await narrow.token()}`);
    expect(res.status).toBe(200);
    expect(res.body.entry.map((e: { resource: { resourceType: string } }) => e.resource.resourceType)).toEqual(['Observation']);
    expect(res.text).not.toContain('Hidden');
    const chained = await request(t.http)
      .get(`/fhir/Observation?subject:Patient.name=hidden`)
      .set('Authorization', `Bearer ${await narrow.token()}`);
    expect(chained.status).toBe(403);
  });
});
