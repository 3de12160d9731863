import { Client } from 'pg';
import request from 'supertest';
import { registerTestClient } from '../support/auth';
import { FHIR_JSON, hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';
import { consentResource } from '../support/consent';

const RUN = Date.now().toString(36);
const SYS = 'urn:test:walk-access';
/** The statement that fetches the content of a walked page (search.service.ts): the hook runs just before it. */
const FETCH_MARK = 'WITH ORDINALITY AS p(id, o0, n)';

type Page = { entry?: { resource: { id: string } }[]; link: { relation: string; url: string }[] };

/**
 * Issue 22, item 7: the index walks (sort walk, id walk) find a page's ids in one statement and
 * fetch their content in another. A Consent committed between the two must hide what it denies:
 * the fetch carries the access predicate. The change is made between the statements by a hook
 * on the database client, as a concurrent writer would.
 */
describe('walked pages apply the access predicate to the fetch (issue 22, item 7)', () => {
  let t: TestApp;
  let reader: (path: string) => request.Test;
  const patientId = (n: number) => `wa${RUN}-p${String(n).padStart(2, '0')}`;
  const obsId = (n: number) => `wa${RUN}-o${String(n).padStart(2, '0')}`;

  beforeAll(async () => {
    t = await createTestApp();
    // 25 patients of organization org-test, one Observation each, dated one day apart; more
    // patients than ID_WALK_SELECTIVE, so a chain on their name is walked, not collected.
    const entry = Array.from({ length: 25 }, (_, n) => [
      {
        resource: hiePatient({ id: patientId(n), identifier: [{ system: SYS, value: patientId(n) }], name: [{ family: `Walkaccess${RUN}` }] }),
        request: { method: 'PUT', url: `Patient/${patientId(n)}` },
      },
      {
        resource: {
          resourceType: 'Observation',
          id: obsId(n),
          status: 'final',
          code: { coding: [{ system: SYS, code: RUN }] },
          subject: { reference: `Patient/${patientId(n)}` },
          effectiveDateTime: `2026-01-${String(n + 1).padStart(2, '0')}T00:00:00Z`,
        },
        request: { method: 'PUT', url: `Observation/${obsId(n)}` },
      },
    ]).flat();
    const res = await t.api.post('/fhir').set('Content-Type', FHIR_JSON).send({ resourceType: 'Bundle', type: 'transaction', entry });
    expect([res.status, res.status === 200 ? '' : JSON.stringify(res.body).slice(0, 500)]).toEqual([200, '']);
    // Another organization's hospital: it sees org-test's records under the opt-out policy until a patient denies it.
    const token = await (await registerTestClient(t, { role: 'hospital', organization: 'org-walk-reader', scopes: ['system/*.rs'] })).token();
    reader = (path) => request(t.http).get(path).set('Authorization', `Bearer ${token}`);
  }, 120_000);
  afterAll(() => t.close());

  /** Patient n denies every organization (its Consent, written by its own organization). */
  const deny = async (n: number) => {
    const res = await t.api
      .post('/fhir/Consent')
      .set('Content-Type', FHIR_JSON)
      .send(consentResource(patientId(n)));
    expect(res.status).toBe(201);
  };

  /** Runs the search; `between` runs (and commits) after the walk and before the content is fetched. */
  async function searchWithChangeBetween(path: string, between: () => Promise<void>): Promise<{ page: Page; fetches: number }> {
    const original = Client.prototype.query;
    let fetches = 0;
    let fired = false;
    const spy = jest.spyOn(Client.prototype, 'query').mockImplementation(function (this: Client, ...args: unknown[]) {
      const first = args[0] as string | { text?: string };
      const sql = typeof first === 'string' ? first : first?.text;
      if (typeof sql === 'string' && sql.includes(FETCH_MARK)) fetches++;
      if (!fired && typeof sql === 'string' && sql.includes(FETCH_MARK)) {
        fired = true;
        const callback = args[args.length - 1];
        const run = between().then(() => (original as (...a: unknown[]) => unknown).apply(this, args));
        if (typeof callback === 'function') {
          run.catch((err) => (callback as (e: unknown) => void)(err));
          return undefined;
        }
        return run;
      }
      return (original as (...a: unknown[]) => unknown).apply(this, args);
    } as typeof Client.prototype.query);
    try {
      const res = await reader(path);
      expect(res.status).toBe(200);
      return { page: res.body as Page, fetches };
    } finally {
      spy.mockRestore();
    }
  }
  const ids = (page: Page) => (page.entry ?? []).map((e) => e.resource.id);

  it('sort walk (_sort=date): a patient denied between the walk and the fetch is left out of the page', async () => {
    const path = `/fhir/Observation?code=${SYS}|${RUN}&_sort=date&_count=5`;
    const before = await reader(path);
    expect(ids(before.body)).toEqual([0, 1, 2, 3, 4].map(obsId));
    const { page, fetches } = await searchWithChangeBetween(path, () => deny(2));
    // The walk's statement ran and the fetch came after it (the path under test).
    expect(fetches).toBe(1);
    expect(ids(page)).toEqual([0, 1, 3, 4].map(obsId));
    // Paging still goes on from the walked page's end.
    const next = await reader(page.link.find((l) => l.relation === 'next')!.url.replace(/^https?:\/\/[^/]+/, ''));
    expect(ids(next.body)).toEqual([5, 6, 7, 8, 9].map(obsId));
  });

  it('id walk (chain in id order): a patient denied between the walk and the fetch is left out of the page', async () => {
    const path = `/fhir/Observation?subject:Patient.name=Walkaccess${RUN}&_count=5`;
    const before = await reader(path);
    expect(ids(before.body)).toEqual([0, 1, 3, 4, 5].map(obsId));
    const { page, fetches } = await searchWithChangeBetween(path, () => deny(4));
    expect(fetches).toBe(1);
    expect(ids(page)).toEqual([0, 1, 3, 5].map(obsId));
    const next = await reader(page.link.find((l) => l.relation === 'next')!.url.replace(/^https?:\/\/[^/]+/, ''));
    expect(ids(next.body)).toEqual([6, 7, 8, 9, 10].map(obsId));
  });
});
