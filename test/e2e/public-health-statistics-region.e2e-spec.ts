import request from 'supertest';
import type { Address, MeasureReport, MeasureReportGroupStratifier, Patient } from '@medplum/fhirtypes';
import { registerTestClient } from '../support/auth';
import { FHIR_JSON } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

const RUN = Date.now().toString(36);
const YEAR = { periodStart: '2024-01-01', periodEnd: '2024-12-31' };
/** At the default threshold (11) each group of 12 is shown. */
const GROUP = 12;

/**
 * The region stratifier of `$evaluate-measure` from index rows (docs/public-health.md, "Region from
 * index rows"): the home address in use on `periodEnd`, read from the shipped `home-*-period`
 * composites, never from the stored Patient; a work address or a former home does not count, an
 * address period of coarser precision covers its whole span, and data written before the composites
 * existed is counted by region again after `$reindex` of Patient.
 */
describe('$evaluate-measure: region from the home address current at periodEnd (index rows)', () => {
  let t: TestApp;
  let agency: string;
  let admin: request.Agent;
  const ids: Record<string, string[]> = { moved: [], yearEnd: [], leftBefore: [] };

  const patient = (id: string, address: Address[]): Patient => ({
    resourceType: 'Patient',
    id,
    identifier: [{ system: 'urn:hie-test:mrn', value: id }],
    name: [{ family: 'Region', given: ['Test'] }],
    gender: 'female',
    birthDate: '1980-05-05',
    address,
  });
  const evaluateRegion = async (): Promise<Record<string, number | undefined>> => {
    const res = await request(t.http).get('/fhir/Measure/insurance-coverage/$evaluate-measure').query(YEAR).set('Authorization', `Bearer ${agency}`);
    expect(res.status).toBe(200);
    const group = (res.body as MeasureReport).group![0];
    const region = group.stratifier!.find((s: MeasureReportGroupStratifier) => s.code?.[0]?.coding?.[0]?.code === 'region')!;
    return Object.fromEntries(region.stratum!.map((s) => [s.value!.text!, s.population!.find((p) => p.code!.coding![0].code === 'denominator')!.count]));
  };

  beforeAll(async () => {
    t = await createTestApp();
    agency = await (await registerTestClient(t, { role: 'public-health', organization: `rg-agency-${RUN}`, scopes: ['system/*.rs'], purposes: ['PUBHLTH'] })).token();
    const client = await registerTestClient(t, { role: 'admin', scopes: ['system/Organization.cruds'], purposes: ['HSYSADMIN'] });
    admin = request.agent(t.http).set('Authorization', `Bearer ${await client.token()}`);
    const entries: Patient[] = [];
    for (let i = 0; i < GROUP; i++) {
      // Listed first: a former home; then a work address without a period; the current home last.
      ids.moved.push(`rg-${RUN}-moved-${i}`);
      entries.push(
        patient(ids.moved[i], [
          { use: 'home', district: 'Old Town', period: { start: '2010-01-01', end: '2023-05-31' } },
          { use: 'work', district: 'Harbor' },
          { use: 'home', district: 'New Town', period: { start: '2023-06-01' } },
        ]),
      );
      // A period of year precision: in use through 2024-12-31 (the whole year 2024).
      ids.yearEnd.push(`rg-${RUN}-year-${i}`);
      entries.push(patient(ids.yearEnd[i], [{ district: 'Year End', period: { start: '2019', end: '2024' } }]));
      // Moved away before the period's end: no current home address (unknown).
      ids.leftBefore.push(`rg-${RUN}-left-${i}`);
      entries.push(patient(ids.leftBefore[i], [{ use: 'home', district: 'Left Town', period: { start: '2015-02-01', end: '2024-12-30' } }]));
    }
    const bundle = { resourceType: 'Bundle', type: 'transaction', entry: entries.map((resource) => ({ resource, request: { method: 'PUT', url: `Patient/${resource.id}` } })) };
    const res = await t.api.post('/fhir').set('Content-Type', FHIR_JSON).send(bundle);
    expect([res.status, res.status === 200 ? undefined : res.body]).toEqual([200, undefined]);
  }, 120_000);

  afterAll(() => t?.close());

  it('counts each patient under the district of the home address in use on periodEnd; a former home, a work address and an ended one do not count', async () => {
    // The test database holds these patients only: 36 counted, none covered.
    expect(await evaluateRegion()).toEqual({ 'New Town': GROUP, 'Year End': GROUP, unknown: GROUP });
  });

  it('a Patient stored before the home-address composites existed counts by region again after $reindex of Patient', async () => {
    // Lose the composite rows (as for data written before the shipped SearchParameters): no region.
    await t.db.query(`DELETE FROM search_composite WHERE resource_type = 'Patient' AND param LIKE 'home-%-period'`);
    expect(await evaluateRegion()).toEqual({ unknown: 3 * GROUP });
    const res = await admin.post('/fhir/Patient/$reindex');
    expect(res.status).toBe(200);
    expect(res.body.parameter).toEqual([
      { name: 'processed', valueInteger: 3 * GROUP },
      { name: 'complete', valueBoolean: true },
    ]);
    expect(await evaluateRegion()).toEqual({ 'New Town': GROUP, 'Year End': GROUP, unknown: GROUP });
  });
});
