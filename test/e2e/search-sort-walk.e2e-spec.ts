import { registerTestClient } from '../support/auth';
import { FHIR_JSON } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

/**
 * Sorting by a search parameter (docs/search.md, "Sorting"): the order the index walk gives must be
 * R4's — a resource sorts by its lowest value ascending and its highest descending, ties by id,
 * resources without a value last in either direction — on every page, forwards and backwards, and
 * under consent (hidden resources leave no short pages and no wrong totals).
 */
const RUN = `walk-${Date.now().toString(36)}`;
const CODE = `urn:test:walk|${RUN}`;
const id = (local: string) => `${RUN}-${local}`;
type Page = { entry?: { resource: { id: string } }[]; link: { relation: string; url: string }[]; total?: number };

describe('sort by a search parameter (index walk)', () => {
  let t: TestApp;
  const obs = (local: string, effective: Record<string, unknown>, subject?: string) => ({
    resource: {
      resourceType: 'Observation',
      id: id(local),
      status: 'final',
      code: { coding: [{ system: 'urn:test:walk', code: RUN }] },
      ...(subject ? { subject: { reference: `Patient/${id(subject)}` } } : {}),
      ...effective,
    },
    request: { method: 'PUT', url: `Observation/${id(local)}` },
  });

  beforeAll(async () => {
    t = await createTestApp();
    const entry = [
      { resource: { resourceType: 'Patient', id: id('hidden'), identifier: [{ system: 'urn:test:walk', value: id('hidden') }], gender: 'unknown', name: [{ family: 'Hidden' }] }, request: { method: 'PUT', url: `Patient/${id('hidden')}` } },
      { resource: { resourceType: 'Patient', id: id('shown'), identifier: [{ system: 'urn:test:walk', value: id('shown') }], gender: 'unknown', name: [{ family: 'Shown' }] }, request: { method: 'PUT', url: `Patient/${id('shown')}` } },
      // Two values (Timing events): ascending by the lower 2020-01-05, descending by the higher 2020-03-01.
      obs('a', { effectiveTiming: { event: ['2020-01-05', '2020-03-01'] } }, 'shown'),
      obs('b', { effectiveDateTime: '2020-02-01' }, 'hidden'),
      // A Period: ascending by its start, descending by its end (the latest of all).
      obs('c', { effectivePeriod: { start: '2020-01-10', end: '2020-04-01' } }, 'shown'),
      obs('d', {}, 'hidden'),
      // Ties b on the key: the id decides.
      obs('e', { effectiveDateTime: '2020-02-01' }, 'shown'),
      obs('f', {}, 'shown'),
      obs('g', { effectiveDateTime: '2020-01-20' }, 'hidden'),
    ];
    const res = await t.api.post('/fhir').set('Content-Type', FHIR_JSON).send({ resourceType: 'Bundle', type: 'transaction', entry });
    expect([res.status, res.status === 200 ? '' : JSON.stringify(res.body)]).toEqual([200, '']);
    // The hidden patient denies all sharing (written by the organization that authored the Patient).
    const consent = await t.api.post('/fhir/Consent').set('Content-Type', FHIR_JSON).send({
      resourceType: 'Consent',
      status: 'active',
      scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
      category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
      patient: { reference: `Patient/${id('hidden')}` },
      policyRule: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'OPTOUT' }] },
      provision: { type: 'deny' },
    });
    expect(consent.status).toBe(201);
  }, 60_000);
  afterAll(() => t.close());

  const ids = (body: Page) => (body.entry ?? []).map((e) => e.resource.id.slice(RUN.length + 1));
  const relative = (url: string) => url.replace(/^https?:\/\/[^/]+/, '');

  /** Follows `next` to the end, then `previous` back to the start: the pages, both ways. */
  async function walk(get: (url: string) => Promise<Page>, first: string): Promise<{ forward: string[][]; backward: string[][]; total?: number }> {
    const forward: string[][] = [];
    let body = await get(first);
    const total = body.total;
    forward.push(ids(body));
    for (let next = body.link.find((l) => l.relation === 'next'); next; next = body.link.find((l) => l.relation === 'next')) {
      body = await get(relative(next.url));
      forward.push(ids(body));
    }
    const backward: string[][] = [ids(body)];
    for (let prev = body.link.find((l) => l.relation === 'previous'); prev; prev = body.link.find((l) => l.relation === 'previous')) {
      body = await get(relative(prev.url));
      backward.push(ids(body));
    }
    return { forward, backward, total };
  }

  const asOwner = async (url: string): Promise<Page> => {
    const res = await t.api.get(url);
    expect(res.status).toBe(200);
    return res.body as Page;
  };

  it('indexes the Timing with two values and the Period as one range (the cases below rely on it)', async () => {
    const rows: { id: string; n: number }[] = await t.db.query(
      `SELECT id, count(*)::int AS n FROM search_date WHERE resource_type = 'Observation' AND param = 'date' AND id = ANY($1) GROUP BY id ORDER BY id`,
      [[id('a'), id('c')]],
    );
    expect(rows).toEqual([
      { id: id('a'), n: 2 },
      { id: id('c'), n: 1 },
    ]);
  });

  it('ascending: lowest value first, ties by id, resources without a date last', async () => {
    expect(ids(await asOwner(`/fhir/Observation?code=${CODE}&_sort=date`))).toEqual(['a', 'c', 'g', 'b', 'e', 'd', 'f']);
  });

  it('descending: highest value first, ties by id, resources without a date last', async () => {
    expect(ids(await asOwner(`/fhir/Observation?code=${CODE}&_sort=-date`))).toEqual(['c', 'a', 'b', 'e', 'g', 'd', 'f']);
  });

  it('pages of 2 forwards and back give the same order, across the end of the dated resources', async () => {
    const asc = await walk(asOwner, `/fhir/Observation?code=${CODE}&_sort=date&_count=2`);
    expect(asc.forward).toEqual([['a', 'c'], ['g', 'b'], ['e', 'd'], ['f']]);
    expect(asc.backward).toEqual([['f'], ['e', 'd'], ['g', 'b'], ['a', 'c']]);
    const desc = await walk(asOwner, `/fhir/Observation?code=${CODE}&_sort=-date&_count=3`);
    expect(desc.forward).toEqual([['c', 'a', 'b'], ['e', 'g', 'd'], ['f']]);
    expect(desc.backward).toEqual([['f'], ['e', 'g', 'd'], ['c', 'a', 'b']]);
  });

  it('a page boundary inside a tie on the key continues by id', async () => {
    const desc = await walk(asOwner, `/fhir/Observation?code=${CODE}&_sort=-date&_count=1`);
    expect(desc.forward.flat()).toEqual(['c', 'a', 'b', 'e', 'g', 'd', 'f']);
    expect(desc.backward.flat()).toEqual(['f', 'd', 'g', 'e', 'b', 'a', 'c']);
  });

  it('under consent: the hidden patient’s resources leave no short page and no wrong total', async () => {
    const other = await registerTestClient(t, { role: 'hospital', organization: `org-other-${RUN}` });
    const token = await other.token();
    const asOther = async (url: string): Promise<Page> => {
      const res = await t.api.get(url).set('Authorization', `Bearer ${token}`);
      expect(res.status).toBe(200);
      return res.body as Page;
    };
    const desc = await walk(asOther, `/fhir/Observation?code=${CODE}&_sort=-date&_count=2&_total=accurate`);
    expect(desc.total).toBe(4);
    expect(desc.forward).toEqual([['c', 'a'], ['e', 'f']]);
    expect(desc.backward).toEqual([['e', 'f'], ['c', 'a']]);
    const asc = await walk(asOther, `/fhir/Observation?code=${CODE}&_sort=date&_count=3&_total=accurate`);
    expect(asc.total).toBe(4);
    expect(asc.forward).toEqual([['a', 'c', 'e'], ['f']]);
  });

  it('a multi-key sort (the general path) keeps the same semantics: missing last, highest value descending', async () => {
    expect(ids(await asOwner(`/fhir/Observation?code=${CODE}&_sort=date,_id`))).toEqual(['a', 'c', 'g', 'b', 'e', 'd', 'f']);
    expect(ids(await asOwner(`/fhir/Observation?code=${CODE}&_sort=-date,-_id`))).toEqual(['c', 'a', 'e', 'b', 'g', 'f', 'd']);
    const pages = await walk(asOwner, `/fhir/Observation?code=${CODE}&_sort=-date,_id&_count=2`);
    expect(pages.forward).toEqual([['c', 'a'], ['b', 'e'], ['g', 'd'], ['f']]);
    expect(pages.backward).toEqual([['f'], ['g', 'd'], ['b', 'e'], ['c', 'a']]);
  });

  it('a cursor key that is not a date answers 400, not 500', async () => {
    const cursor = Buffer.from(JSON.stringify({ d: 'n', v: ['not-a-date'], i: 'x' })).toString('base64url');
    const res = await t.api.get(`/fhir/Observation?code=${CODE}&_sort=date&_cursor=${cursor}`);
    expect(res.status).toBe(400);
    expect(res.body.issue[0].code).toBe('invalid');
  });
});
