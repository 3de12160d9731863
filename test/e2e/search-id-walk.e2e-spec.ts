import { Client } from 'pg';
import { encodeCursor } from '../../src/fhir/search/search-request';
import { FHIR_JSON } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

/**
 * A chain or `_has` in the default order (by id) is walked (docs/search.md, "Chains and _has"): the
 * type's rows in id order, each probed, stopping after the page — and when the matches are too
 * sparse for WALK_BUDGET candidates, the matches are collected instead. Either way the pages are
 * the same: every match once, in id order, forwards and backwards.
 */
const RUN = Date.now().toString(36);
// After every server-assigned id (hex UUIDs sort before 'w'), so this test controls what comes first.
const id = (group: string, n: number) => `w${RUN}-${group}-${String(n).padStart(4, '0')}`;
type Page = { entry?: { resource: { id: string } }[]; link: { relation: string; url: string }[] };

describe('chains and _has in id order (id walk)', () => {
  let t: TestApp;
  const patient = (local: string, family: string) => ({
    resource: { resourceType: 'Patient', id: `w${RUN}-${local}`, identifier: [{ system: 'urn:test:idwalk', value: `w${RUN}-${local}` }], gender: 'unknown', name: [{ family }] },
    request: { method: 'PUT', url: `Patient/w${RUN}-${local}` },
  });
  const obs = (oid: string, subject: string) => ({
    resource: { resourceType: 'Observation', id: oid, status: 'final', code: { text: 'walk' }, subject: { reference: `Patient/w${RUN}-${subject}` } },
    request: { method: 'PUT', url: `Observation/${oid}` },
  });
  const ids = (page: Page) => (page.entry ?? []).map((e) => e.resource.id);
  const next = (page: Page, relation = 'next') => page.link.find((l) => l.relation === relation)?.url;
  /** The page, and whether the id walk's statement ran (and whether it fell back to collecting the matches). */
  async function get(url: string): Promise<{ page: Page; walked: boolean; collected: boolean; walks: number }> {
    const spy = jest.spyOn(Client.prototype, 'query');
    try {
      const res = await t.api.get(url.replace(/^https?:\/\/[^/]+/, ''));
      expect(res.status).toBe(200);
      const sql = (spy.mock.calls as unknown as [unknown][]).map(([q]) => (typeof q === 'string' ? q : ''));
      return {
        page: res.body as Page,
        walked: sql.some((q) => q.includes('FROM resource w') && q.includes('WHERE EXISTS (SELECT 1 FROM resource r')),
        walks: sql.filter((q) => q.includes('FROM resource w') && q.includes('WHERE EXISTS (SELECT 1 FROM resource r')).length,
        collected: sql.some((q) => /FROM resource r WHERE \(r\.resource_type/.test(q) && /ORDER BY r\.id ASC/.test(q)),
      };
    } finally {
      spy.mockRestore();
    }
  }

  const BROAD = `urn:test:idwalk|broad-${RUN}`;
  const manyPatient = (n: number) => `many-${String(n).padStart(2, '0')}`;
  const sparsePatient = (n: number) => `sparse-${String(n).padStart(2, '0')}`;
  const coded = (entry: ReturnType<typeof obs>) => ({ ...entry, resource: { ...entry.resource, code: { coding: [{ system: 'urn:test:idwalk', code: `broad-${RUN}` }] } } });

  beforeAll(async () => {
    t = await createTestApp();
    const entry = [
      // More patients named alike than ID_WALK_SELECTIVE: the chains on these names are broad.
      ...Array.from({ length: 25 }, (_, n) => patient(manyPatient(n), `Walkmany${RUN}`)),
      ...Array.from({ length: 21 }, (_, n) => patient(sparsePatient(n), `Walksparse${RUN}`)),
      patient('few', `Walkfew${RUN}`),
      patient('none', `Walknone${RUN}`),
      // 25 Observations of the "many" patients, interleaved with 10 of "none".
      ...Array.from({ length: 25 }, (_, n) => coded(obs(id('b', n * 2), manyPatient(n)))),
      ...Array.from({ length: 10 }, (_, n) => obs(id('b', n * 2 + 1), 'none')),
      // 2,100 Observations first: a walk from the start spends its budget on them.
      ...Array.from({ length: 2100 }, (_, n) => obs(id('a', n), 'none')),
      ...Array.from({ length: 3 }, (_, n) => obs(id('c', n), 'few')),
      ...Array.from({ length: 21 }, (_, n) => obs(id('e', n), sparsePatient(n))),
    ];
    const res = await t.api.post('/fhir').set('Content-Type', FHIR_JSON).send({ resourceType: 'Bundle', type: 'transaction', entry });
    expect([res.status, res.status === 200 ? '' : JSON.stringify(res.body).slice(0, 500)]).toEqual([200, '']);
  }, 120_000);
  afterAll(() => t.close());

  const many = Array.from({ length: 25 }, (_, n) => id('b', n * 2));

  it('pages a broad chain by walking: 10, 10, 5 in id order, then back', async () => {
    // The first page walks from the start, spends its budget on the 2,100 'a' rows and collects.
    const first = await get(`/fhir/Observation?subject:Patient.name=Walkmany${RUN}&_count=10`);
    expect([ids(first.page), first.walked, first.collected]).toEqual([many.slice(0, 10), true, true]);
    const second = await get(next(first.page)!);
    expect([ids(second.page), second.walks, second.collected]).toEqual([many.slice(10, 20), 1, false]);
    const third = await get(next(second.page)!);
    expect([ids(third.page), third.walked, next(third.page)]).toEqual([many.slice(20), true, undefined]);
    const back = await get(next(third.page, 'previous')!);
    expect([ids(back.page), back.walked, back.collected]).toEqual([many.slice(10, 20), true, false]);
  });

  it('collects a broad chain whose matches are sparse in id order (the walk spent WALK_BUDGET candidates)', async () => {
    const res = await get(`/fhir/Observation?subject:Patient.name=Walksparse${RUN}&_count=10`);
    expect([ids(res.page), res.walked, res.collected]).toEqual([Array.from({ length: 10 }, (_, n) => id('e', n)), true, true]);
  });

  it('collects a selective chain without walking (its inner search has at most ID_WALK_SELECTIVE rows)', async () => {
    const res = await get(`/fhir/Observation?subject:Patient.name=Walkfew${RUN}&_count=10&_cursor=${encodeCursor('next', [], `w${RUN}-b`)}`);
    expect([ids(res.page), res.walks, res.collected]).toEqual([[id('c', 0), id('c', 1), id('c', 2)], 0, true]);
  });

  it('walks _has in id order too, and an untyped chain gives the same pages as the typed one', async () => {
    const has = await get(`/fhir/Patient?_has:Observation:subject:code=${BROAD}&_count=10`);
    const patients = Array.from({ length: 25 }, (_, n) => `w${RUN}-${manyPatient(n)}`);
    expect([ids(has.page), has.walked]).toEqual([patients.slice(0, 10), true]);
    const second = await get(next(has.page)!);
    expect([ids(second.page), second.walked]).toEqual([patients.slice(10, 20), true]);
    const untyped = await get(next((await get(`/fhir/Observation?subject.name=Walkmany${RUN}&_count=10`)).page)!);
    expect([ids(untyped.page), untyped.walked, untyped.collected]).toEqual([many.slice(10, 20), true, false]);
  });
});
