import { putAll } from '../support/bundles';
import { createTestApp, TestApp } from '../support/test-app';

const RUN = 'keyset';
const TAG_Q = `_tag=${encodeURIComponent(`urn:test:run|${RUN}`)}`;

const basic = (id: string, created: string) => ({
  resourceType: 'Basic',
  id,
  meta: { tag: [{ system: 'urn:test:run', code: RUN }] },
  code: { text: 'keyset paging' },
  created,
});

/**
 * Keyset paging (`_cursor`: the last row's sort key and id) while other clients insert and delete
 * between page requests: no resource is returned twice, none that stayed is skipped, deleted ones
 * not yet reached are gone, and new ones after the cursor are picked up (offset paging would skip
 * or repeat rows here).
 */
describe('keyset paging while resources are inserted and deleted between pages', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t.close());

  async function page(url: string): Promise<{ ids: string[]; next?: string }> {
    const res = await t.api.get(url.replace(/^https?:\/\/[^/]+/, ''));
    expect(res.status).toBe(200);
    return {
      ids: (res.body.entry ?? []).map((e: { resource: { id: string } }) => e.resource.id),
      next: res.body.link.find((l: { relation: string }) => l.relation === 'next')?.url,
    };
  }
  const remove = async (id: string) => expect((await t.api.delete(`/fhir/Basic/${id}`)).status).toBe(200);

  it('by _id: each survivor exactly once, in order; deletions ahead vanish, inserts behind the cursor are not repeated', async () => {
    const ids = Array.from({ length: 30 }, (_, n) => `k-${String(n * 10).padStart(3, '0')}`); // k-000 … k-290
    expect((await putAll(t.api, ids.map((id) => basic(id, '2020-01-01')))).status).toBe(200);

    const seen: string[] = [];
    let p = await page(`/fhir/Basic?${TAG_Q}&_sort=_id&_count=10`);
    seen.push(...p.ids);
    expect(p.ids).toEqual(ids.slice(0, 10));
    // Between pages 1 and 2 (cursor at k-090): delete one already seen and two ahead (one the next
    // page's first row); insert one behind the cursor (k-045, never shown) and three ahead.
    await remove('k-050');
    await remove('k-100');
    await remove('k-150');
    expect((await putAll(t.api, [basic('k-045', '2020-01-01'), basic('k-095', '2020-01-01'), basic('k-155', '2020-01-01'), basic('k-295', '2020-01-01')])).status).toBe(200);
    for (let pages = 2; p.next; pages++) {
      p = await page(p.next);
      seen.push(...p.ids);
      // Between pages 2 and 3 as well: the row the next page would start with goes.
      if (pages === 2) await remove('k-200');
    }
    const expected = [...ids.filter((id) => !['k-100', 'k-150', 'k-200'].includes(id)), 'k-095', 'k-155', 'k-295'].sort();
    expect(seen).toEqual(expected);
    expect(new Set(seen).size).toBe(seen.length);
  });

  it('by a sort key with ties (created, then id): no duplicates or gaps across inserts and deletes at the page boundary', async () => {
    const day = (n: number) => `2021-03-${String((n % 4) + 1).padStart(2, '0')}`;
    const ids = Array.from({ length: 24 }, (_, n) => `t-${String(n).padStart(2, '0')}`);
    expect((await putAll(t.api, ids.map((id, n) => basic(id, day(n))))).status).toBe(200);
    const q = `/fhir/Basic?${TAG_Q}&_id=${ids.join(',')},t-99,t-07b&_sort=created&_count=5`;

    const seen: string[] = [];
    let p = await page(q);
    seen.push(...p.ids);
    // Sorted by (created, id): day 1 holds t-00, t-04, t-08, t-12, t-16, t-20; page 1 ends at t-16.
    expect(p.ids).toEqual(['t-00', 't-04', 't-08', 't-12', 't-16']);
    await remove('t-20'); // the tie right after the cursor
    await remove('t-04'); // already seen
    // Both on the cursor's day: t-07b sorts before t-16 (behind the cursor, never shown), t-99 after it (shown once).
    expect((await putAll(t.api, [basic('t-07b', day(0)), basic('t-99', day(0))])).status).toBe(200);
    while (p.next) {
      p = await page(p.next);
      seen.push(...p.ids);
    }
    const order = (id: string) => (id === 't-99' || id === 't-07b' ? 0 : Number(id.slice(2)) % 4);
    const survivors = [...ids.filter((id) => id !== 't-20'), 't-99'];
    const expected = survivors.sort((a, b) => order(a) - order(b) || (a < b ? -1 : 1));
    expect(seen).toEqual(expected);
    expect(seen).not.toContain('t-07b');
    expect(new Set(seen).size).toBe(seen.length);
  });
});
