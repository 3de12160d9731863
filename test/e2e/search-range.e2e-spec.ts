import { hiePatient } from '../support/fixtures';
import { postTransaction } from '../support/bundles';
import { createTestApp, TestApp } from '../support/test-app';

const RUN = `rg-${Date.now().toString(36)}`;
const TAG = { system: 'urn:test:run', code: RUN };
const TAG_Q = `_tag=${encodeURIComponent(`urn:test:run|${RUN}`)}`;
const UCUM = 'http://unitsofmeasure.org';

/**
 * Range values are indexed for number and quantity parameters with R4's range semantics
 * (search.html, prefixes: the search value against the target's range; open bounds unbounded).
 */
describe('search: number and quantity parameters over Range values', () => {
  let t: TestApp;
  const put = (resource: Record<string, unknown>): unknown => ({
    resource: { ...resource, id: `${RUN}-${resource.id}`, meta: { tag: [TAG] } },
    request: { method: 'PUT', url: `${resource.resourceType}/${RUN}-${resource.id}` },
  });
  const subject = { reference: `Patient/${RUN}-p` };
  const risk = (id: string, probability: Record<string, unknown>): unknown =>
    put({ resourceType: 'RiskAssessment', id, status: 'final', subject, prediction: [probability] });
  const condition = (id: string, onset: Record<string, unknown>): unknown =>
    put({ resourceType: 'Condition', id, subject, code: { text: 'range test' }, ...onset });

  const percent = (value: number): Record<string, unknown> => ({ value, unit: '%', system: UCUM, code: '%' });

  beforeAll(async () => {
    t = await createTestApp();
    const res = await postTransaction(t.api, [
      put({ ...hiePatient(), id: 'p' }),
      // Probability ranges are percentages (ras-1). a: 20–24 %; b: from 60 % with no high bound; c: a plain decimal 30.
      risk('a', { probabilityRange: { low: percent(20), high: percent(24) } }),
      risk('b', { probabilityRange: { low: percent(60) } }),
      risk('c', { probabilityDecimal: 30 }),
      // onset 5–10 years (Range) and at 7 years (Age).
      condition('range', { onsetRange: { low: { value: 5, unit: 'a', system: UCUM, code: 'a' }, high: { value: 10, unit: 'a', system: UCUM, code: 'a' } } }),
      condition('age', { onsetAge: { value: 7, unit: 'a', system: UCUM, code: 'a' } }),
      // up to 3 years: no low bound.
      condition('upto', { onsetRange: { high: { value: 3, unit: 'a', system: UCUM, code: 'a' } } }),
    ]);
    expect({ status: res.status, body: res.status === 200 ? undefined : res.body }).toEqual({ status: 200, body: undefined });
  });
  afterAll(() => t.close());

  const ids = async (type: string, query: string): Promise<string[]> => {
    const res = await t.api.get(`/fhir/${type}?${query}&${TAG_Q}`).set('Prefer', 'handling=strict');
    expect(res.status).toBe(200);
    return res.body.entry?.map((e: { resource: { id: string } }) => e.resource.id.slice(RUN.length + 1)).sort() ?? [];
  };

  it.each([
    ['eq: the search value (its implicit range) contains the target', 'probability=30', ['c']],
    ['eq: a range around the search value is not contained in [21.5, 22.5)', 'probability=22', []],
    ['eq: a search value of lower precision, [15, 25), contains 20–24', 'probability=2e1', ['a']],
    ['gt: a range reaching above the value (open high bound)', 'probability=gt50', ['b']],
    ['gt: beyond any bounded range, only the open one', 'probability=gt1000', ['b']],
    ['lt: a range reaching below the value', 'probability=lt22', ['a']],
    ['ge: the high bound at the value', 'probability=ge24', ['a', 'b', 'c']],
    ['le: the low bound at the value', 'probability=le20', ['a']],
    ['sa: wholly above', 'probability=sa50', ['b']],
    ['eb: wholly below', 'probability=eb50', ['a', 'c']],
    ['ap: overlapping within 10% (19.8 to 24.2)', 'probability=ap22', ['a']],
    ['ne: the search range does not contain the target', 'probability=ne30', ['a', 'b']],
  ])('RiskAssessment %s', async (_name, query, expected) => {
    expect(await ids('RiskAssessment', query)).toEqual(expected);
  });

  it.each([
    ['eq 7 a: the Age, not the range 5–10 around it', `onset-age=7|${encodeURIComponent(UCUM)}|a`, ['age']],
    ['gt 8 a: the range whose high bound is 10', `onset-age=gt8|${encodeURIComponent(UCUM)}|a`, ['range']],
    ['lt 6 a: the range from 5, the open-low range up to 3', 'onset-age=lt6||a', ['range', 'upto']],
    ['le 2 a: only the open-low range', 'onset-age=le2||a', ['upto']],
    ['another unit matches nothing', 'onset-age=gt8||mo', []],
  ])('Condition onset-age %s', async (_name, query, expected) => {
    expect(await ids('Condition', query)).toEqual(expected);
  });

  it('indexes a Range as one row with its bounds and unit (an open bound infinite)', async () => {
    const rows = await t.db.query(
      `SELECT id, value, low::text, high::text, system, code FROM search_quantity WHERE resource_type = 'Condition' AND param = 'onset-age' AND id LIKE $1 ORDER BY id`,
      [`${RUN}-%`],
    );
    expect(rows).toEqual([
      { id: `${RUN}-age`, value: '7', low: null, high: null, system: UCUM, code: 'a' },
      { id: `${RUN}-range`, value: null, low: '5', high: '10', system: UCUM, code: 'a' },
      { id: `${RUN}-upto`, value: null, low: '-Infinity', high: '3', system: UCUM, code: 'a' },
    ]);
  });
});
