import { FHIR_JSON } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

const JSON_PATCH = 'application/json-patch+json';
const PRECISE = '0.1000000000000000055511151231257827';

/**
 * R4 datatypes, `decimal`: the precision is significant (`1.50` is not `1.5`). Bodies are sent and
 * checked as text: a JS object (supertest's `res.body`) cannot show the difference.
 */
describe('decimal precision', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t.close());

  /** An Observation as JSON text: valueQuantity `value`, components with the given decimals. */
  function observation(value: string, components: string[] = [], id?: string): string {
    const comps = components.map(
      (v, n) => `{"code":{"coding":[{"system":"http://loinc.org","code":"comp-${n}"}]},"valueQuantity":{"value":${v},"unit":"mg","system":"http://unitsofmeasure.org","code":"mg"}}`,
    );
    return (
      `{"resourceType":"Observation",${id ? `"id":"${id}",` : ''}"status":"final","code":{"coding":[{"system":"http://loinc.org","code":"2345-7"}]},` +
      `"valueQuantity":{"value":${value},"unit":"mg","system":"http://unitsofmeasure.org","code":"mg"}` +
      `${comps.length ? `,"component":[${comps.join(',')}]` : ''}}`
    );
  }

  async function create(value: string, components: string[] = []): Promise<string> {
    const res = await t.api.post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(observation(value, components));
    expect(res.status).toBe(201);
    return res.body.id;
  }

  async function storedValues(id: string): Promise<{ content: string; index: string[] }> {
    const [row] = await t.db.query(`SELECT content::text AS content FROM resource WHERE resource_type = 'Observation' AND id = $1`, [id]);
    const index = await t.db.query(
      `SELECT param || '=' || value::text AS v FROM search_quantity WHERE resource_type = 'Observation' AND id = $1`,
      [id],
    );
    return { content: row.content, index: index.map((r: { v: string }) => r.v).sort() };
  }

  async function searchIds(query: string): Promise<string[]> {
    const res = await t.api.get(`/fhir/Observation?${query}`);
    expect(res.status).toBe(200);
    return (res.body.entry ?? []).map((e: { resource: { id: string } }) => e.resource.id).sort();
  }

  it('create keeps every decimal as received in the response, the stored content and the index; integers stay integers', async () => {
    const res = await t.api
      .post('/fhir/Observation')
      .set('Content-Type', FHIR_JSON)
      .send(observation('1.50', ['0.0', '100.00', PRECISE, '72', '12345678901234567890', '-3.10']));
    expect(res.status).toBe(201);
    expect(res.text).toContain('"valueQuantity":{"value":1.50,');
    for (const v of ['0.0', '100.00', PRECISE, '72', '12345678901234567890', '-3.10']) expect(res.text).toContain(`"value":${v},`);
    const { content, index } = await storedValues(res.body.id);
    expect(content).toContain('"valueQuantity": {"code": "mg", "unit": "mg", "value": 1.50,');
    expect(content).toContain(`"value": ${PRECISE},`);
    expect(index).toEqual([
      'combo-value-quantity=-3.10',
      'combo-value-quantity=0.0',
      `combo-value-quantity=${PRECISE}`,
      'combo-value-quantity=1.50',
      'combo-value-quantity=100.00',
      'combo-value-quantity=12345678901234567890',
      'combo-value-quantity=72',
      'component-value-quantity=-3.10',
      'component-value-quantity=0.0',
      `component-value-quantity=${PRECISE}`,
      'component-value-quantity=100.00',
      'component-value-quantity=12345678901234567890',
      'component-value-quantity=72',
      'value-quantity=1.50',
    ]);
  });

  it('read, vread, _summary and _elements return the decimals as stored', async () => {
    const id = await create('1.50', ['0.0', '100.00']);
    for (const path of [`/fhir/Observation/${id}`, `/fhir/Observation/${id}/_history/1`, `/fhir/Observation/${id}?_summary=true`, `/fhir/Observation/${id}?_elements=valueQuantity,component`]) {
      const res = await t.api.get(path);
      expect(res.status).toBe(200);
      expect(res.text).toContain('"value":1.50,');
      if (!path.includes('_summary')) expect(res.text).toContain('"value":0.0,');
    }
    const pretty = await t.api.get(`/fhir/Observation/${id}?_pretty=true`);
    expect(pretty.text).toContain('"value": 100.00,');
  });

  it('the exponent form (allowed by the R4 decimal regex) is kept at its digits in plain notation, as jsonb stores it', async () => {
    const res = await t.api.post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(observation('1.50e1', ['1e2', '2.5E-3']));
    expect(res.status).toBe(201);
    expect(res.text).toContain('"value":15.0,');
    expect(res.text).toContain('"value":100,');
    expect(res.text).toContain('"value":0.0025,');
    const read = await t.api.get(`/fhir/Observation/${res.body.id}`);
    expect(read.text).toContain('"value":15.0,');
    expect(read.text).toContain('"value":100,');
    expect(read.text).toContain('"value":0.0025,');
  });

  it('update and history keep each version\'s decimals', async () => {
    const id = await create('1.50');
    const put = await t.api.put(`/fhir/Observation/${id}`).set('Content-Type', FHIR_JSON).send(observation('2.500', [], id));
    expect(put.status).toBe(200);
    expect(put.text).toContain('"value":2.500,');
    const history = await t.api.get(`/fhir/Observation/${id}/_history`);
    expect(history.status).toBe(200);
    expect(history.body.entry.map((e: { resource: { meta: { versionId: string } } }) => e.resource.meta.versionId)).toEqual(['2', '1']);
    const [v2, v1] = history.text.split('"fullUrl"').slice(1);
    expect(v2).toContain('"value":2.500,');
    expect(v1).toContain('"value":1.50,');
    expect((await storedValues(id)).index).toEqual(['combo-value-quantity=2.500', 'value-quantity=2.500']);
  });

  it('JSON Patch: added values keep their precision, untouched ones too, and test compares decimals as written', async () => {
    const id = await create('1.50', ['0.0']);
    const patch =
      `[{"op":"test","path":"/valueQuantity/value","value":1.50},` +
      `{"op":"add","path":"/component/-","value":{"code":{"text":"added"},"valueQuantity":{"value":2.50,"unit":"mg"}}},` +
      `{"op":"replace","path":"/component/0/valueQuantity/value","value":10.10}]`;
    const res = await t.api.patch(`/fhir/Observation/${id}`).set('Content-Type', JSON_PATCH).send(patch);
    expect(res.status).toBe(200);
    expect(res.text).toContain('"value":1.50,');
    expect(res.text).toContain('"valueQuantity":{"value":2.50,"unit":"mg"}');
    expect(res.text).toContain('"value":10.10,');
    const read = await t.api.get(`/fhir/Observation/${id}`);
    expect(read.text).toContain('"valueQuantity":{"unit":"mg","value":2.50}');
    expect((await storedValues(id)).index).toEqual([
      'combo-value-quantity=1.50',
      'combo-value-quantity=10.10',
      'combo-value-quantity=2.50',
      'component-value-quantity=10.10',
      'component-value-quantity=2.50',
      'value-quantity=1.50',
    ]);

    // 1.5 is not 1.50 (R4: precision is significant): the test fails and nothing changes.
    const failed = await t.api.patch(`/fhir/Observation/${id}`).set('Content-Type', JSON_PATCH).send(`[{"op":"test","path":"/valueQuantity/value","value":1.5}]`);
    expect(failed.status).toBe(422);
    expect(failed.body.issue[0].code).toBe('processing');
    const [{ version_id }] = await t.db.query(`SELECT version_id FROM resource WHERE resource_type = 'Observation' AND id = $1`, [id]);
    expect(version_id).toBe(2);
  });

  it('FHIRPath Patch: a valueDecimal keeps its precision', async () => {
    const id = await create('1.50', ['0.0']);
    const parameters =
      `{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"replace"},` +
      `{"name":"path","valueString":"Observation.valueQuantity.value"},{"name":"value","valueDecimal":4.20}]}]}`;
    const res = await t.api.patch(`/fhir/Observation/${id}`).set('Content-Type', FHIR_JSON).send(parameters);
    expect(res.status).toBe(200);
    expect(res.text).toContain('"value":4.20,');
    expect(res.text).toContain('"value":0.0,');
    expect((await storedValues(id)).index).toContain('value-quantity=4.20');
  });

  it('transaction and batch: entries\' resources and responses keep decimals', async () => {
    for (const type of ['transaction', 'batch']) {
      const body =
        `{"resourceType":"Bundle","type":"${type}","entry":[` +
        `{"fullUrl":"urn:uuid:6e3c2a1e-0000-4000-8000-000000000001","resource":${observation('5.50', ['7.000'])},"request":{"method":"POST","url":"Observation"}}]}`;
      const res = await t.api.post('/fhir').set('Content-Type', FHIR_JSON).set('Prefer', 'return=representation').send(body);
      expect(res.status).toBe(200);
      expect(res.body.entry[0].response.status).toBe('201 Created');
      expect(res.text).toContain('"value":5.50,');
      expect(res.text).toContain('"value":7.000,');
      const id = res.body.entry[0].resource.id;
      const read = await t.api.get(`/fhir/Observation/${id}`);
      expect(read.text).toContain('"value":5.50,');
      expect((await storedValues(id)).index).toContain('value-quantity=5.50');
    }
  });

  it('a JSON Patch inside a transaction (Binary) keeps its decimals', async () => {
    const id = await create('1.50');
    const data = Buffer.from(`[{"op":"replace","path":"/valueQuantity/value","value":8.80}]`).toString('base64');
    const body =
      `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Binary","contentType":"${JSON_PATCH}","data":"${data}"},` +
      `"request":{"method":"PATCH","url":"Observation/${id}"}}]}`;
    const res = await t.api.post('/fhir').set('Content-Type', FHIR_JSON).send(body);
    expect(res.status).toBe(200);
    expect(res.body.entry[0].response.status).toBe('200 OK');
    const read = await t.api.get(`/fhir/Observation/${id}`);
    expect(read.text).toContain('"value":8.80,');
  });

  describe('search by the exact value (search.html#number: the search value\'s implicit precision, stored values as exact numbers)', () => {
    let stored150: string;
    let stored15: string;
    let precise: string;
    let tenth: string;
    beforeAll(async () => {
      await t.db.query(`DELETE FROM resource WHERE resource_type = 'Observation'`);
      await t.db.query(`DELETE FROM search_quantity WHERE resource_type = 'Observation'`);
      stored150 = await create('1.50');
      stored15 = await create('1.5');
      precise = await create('2', [PRECISE]);
      tenth = await create('3', ['0.1']);
    });

    it('1.50 and 1.5 both match a stored 1.50 (and 1.5); the search Bundle returns 1.50', async () => {
      expect(await searchIds('value-quantity=1.50')).toEqual([stored150, stored15].sort());
      expect(await searchIds('value-quantity=1.5')).toEqual([stored150, stored15].sort());
      expect(await searchIds('value-quantity=1.5|http://unitsofmeasure.org|mg')).toEqual([stored150, stored15].sort());
      const bundle = await t.api.get(`/fhir/Observation?_id=${stored150}&value-quantity=1.50`);
      expect(bundle.body.entry.map((e: { resource: { id: string } }) => e.resource.id)).toEqual([stored150]);
      expect(bundle.text).toContain('"value":1.50,');
      const summary = await t.api.get(`/fhir/Observation?_id=${stored150}&_summary=true`);
      expect(summary.text).toContain('"value":1.50,');
    });

    it('1.505 covers [1.5045, 1.5055): neither a stored 1.5 nor 1.50', async () => {
      expect(await searchIds('value-quantity=1.505')).toEqual([]);
      expect(await searchIds('value-quantity=1.49')).toEqual([]);
    });

    it('a value beyond double precision is searched exactly: it is not 0.1', async () => {
      expect(await searchIds(`component-value-quantity=${PRECISE}`)).toEqual([precise]);
      expect(await searchIds('component-value-quantity=0.1')).toEqual([precise, tenth].sort());
      expect(await searchIds('component-value-quantity=0.10000000000000000')).toEqual([tenth]);
      expect(await searchIds('component-value-quantity=gt0.1')).toEqual([precise]);
      expect(await searchIds(`component-value-quantity=lt${PRECISE}`)).toEqual([tenth]);
      expect(await searchIds(`component-value-quantity=ge${PRECISE}`)).toEqual([precise]);
    });
  });

  describe("a raw '+' in a date's time zone arrives as a space", () => {
    it.each([
      ['date', 'date=2016-05-25T23:14:15+00:00', "date: '2016-05-25T23:14:15 00:00' is not a valid date (prefix eq)"],
      ['_lastUpdated', '_lastUpdated=gt2016-05-25T23:14:15.250+01:00', "_lastUpdated: 'gt2016-05-25T23:14:15.250 01:00' is not a valid date (prefix gt)"],
    ])('%s: 400 saying to send it as %%2B, naming the parameter and the value received', async (param, query, message) => {
      const res = await t.api.get(`/fhir/Observation?${query}`);
      expect(res.status).toBe(400);
      expect(res.body.issue).toEqual([
        {
          severity: 'error',
          code: 'invalid',
          diagnostics: `${message}; a '+' in the time zone must be sent as %2B (a raw '+' in a URL query means a space)`,
          expression: [param],
        },
      ]);
      const encoded = await t.api.get(`/fhir/Observation?${query.replace('+', '%2B')}`);
      expect(encoded.status).toBe(200);
    });

    it('other bad dates keep the plain message', async () => {
      const res = await t.api.get('/fhir/Observation?date=2016-13-25');
      expect(res.status).toBe(400);
      expect(res.body.issue[0].diagnostics).toBe("date: '2016-13-25' is not a valid date (prefix eq)");
    });
  });
});
