import { hiePatient } from '../support/fixtures';
import { postTransaction } from '../support/bundles';
import { createTestApp, TestApp } from '../support/test-app';

const RUN = `dx-${Date.now().toString(36)}`;
const TAG = { system: 'urn:test:run', code: RUN };
const TAG_Q = `_tag=${encodeURIComponent(`urn:test:run|${RUN}`)}`;

/**
 * Dates at the edges of what FHIR allows (years 0001–9999). `9999-12-31` is a common "no end"; its
 * range ends at the start of year 10000, which an ISO instant cannot hold: it is stored and searched
 * as unbounded, not refused with a 500. Years below 100 are those years, not 1900 + the year
 * (`Date.UTC`'s two-digit rule).
 */
describe('search: dates at the ends of the FHIR range', () => {
  let t: TestApp;
  const put = (resource: Record<string, unknown>): unknown => ({
    resource: { ...resource, id: `${RUN}-${resource.id}`, meta: { tag: [TAG] } },
    request: { method: 'PUT', url: `${resource.resourceType}/${RUN}-${resource.id}` },
  });
  const subject = { reference: `Patient/${RUN}-p` };
  const condition = (id: string, onset: Record<string, unknown>): unknown =>
    put({ resourceType: 'Condition', id, subject, code: { text: 'date extremes' }, ...onset });

  beforeAll(async () => {
    t = await createTestApp();
    const res = await postTransaction(t.api, [
      put({ ...hiePatient(), id: 'p' }),
      condition('no-end', { onsetPeriod: { start: '2020-01-01', end: '9999-12-31' } }),
      condition('last-day', { onsetDateTime: '9999-12-31' }),
      condition('late-zone', { onsetDateTime: '9999-12-31T23:30:00-05:00' }),
      condition('year-50', { onsetDateTime: '0050-06-01' }),
      condition('modern', { onsetDateTime: '1950-06-01' }),
    ]);
    expect({ status: res.status, body: res.status === 200 ? undefined : res.body }).toEqual({ status: 200, body: undefined });
  });
  afterAll(() => t.close());

  const ids = async (query: string): Promise<string[]> => {
    const res = await t.api.get(`/fhir/Condition?${query}&${TAG_Q}`).set('Prefer', 'handling=strict');
    expect({ status: res.status, issue: res.body.issue }).toEqual({ status: 200, issue: undefined });
    return res.body.entry?.map((e: { resource: { id: string } }) => e.resource.id.slice(RUN.length + 1)).sort() ?? [];
  };

  it('stores a single write with a period ending 9999-12-31 (201, not 500)', async () => {
    const res = await t.api
      .post('/fhir/Condition')
      .set('Content-Type', 'application/fhir+json')
      .send({ resourceType: 'Condition', subject, code: { text: 'open' }, onsetPeriod: { start: '2021-01-01', end: '9999-12-31' }});
    expect(res.status).toBe(201);
    expect(res.body.onsetPeriod).toEqual({ start: '2021-01-01', end: '9999-12-31' });
  });

  it.each([
    ['the last year', 'onset-date=9999', ['last-day', 'late-zone']],
    ['after the 9999 start: the open end and the last day', 'onset-date=ge9999-12-31', ['last-day', 'late-zone', 'no-end']],
    ['sa the year 9998', 'onset-date=sa9998', ['last-day', 'late-zone']],
    // 23:30-05:00 on the last day is past 9999 in UTC: its start is kept at the last instant there is.
    ['approximately the last day (an open end overlaps it)', 'onset-date=ap9999-12-31', ['last-day', 'late-zone', 'no-end']],
    ['before year 100: year 50 is not 1950', 'onset-date=lt0100', ['year-50']],
    ['year 1950 alone', 'onset-date=1950', ['modern']],
    ['approximately year 50', 'onset-date=ap0050-06-01', ['year-50']],
  ])('%s: %s', async (_name, query, expected) => {
    expect(await ids(query)).toEqual(expected);
  });

  it('refuses year 0000 (not a FHIR date) with 400 naming the parameter', async () => {
    const res = await t.api.get(`/fhir/Condition?onset-date=0000&${TAG_Q}`);
    expect(res.status).toBe(400);
    expect(res.body.issue[0].expression).toEqual(['onset-date']);
  });
});
