import { FHIR_JSON, hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

const SYS = 'http://hospital-trust.example.org/mrn';
const JSON_PATCH = 'application/json-patch+json';
/** superagent would serialize a Buffer as JSON (`{"type":"Buffer",…}`): send the bytes as they are. */
const asBytes = (body: unknown) => body as string;

/** Input that was stored or crashed the server (issue 22, items 9, 11, 12): 4xx naming where, nothing stored. */
describe('input handling, second pass', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t.close());

  const mrn = (value: string, extra: Record<string, unknown> = {}) => hiePatient({ identifier: [{ system: SYS, value }], ...extra });
  async function storedWithMrn(value: string): Promise<number> {
    const [{ n }] = await t.db.query(`SELECT count(*)::int AS n FROM resource_history WHERE content->'identifier'->0->>'value' = $1`, [value]);
    return n;
  }
  async function createPatient(value: string): Promise<string> {
    const res = await t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(mrn(value));
    expect(res.status).toBe(201);
    return res.body.id;
  }
  async function versionOf(id: string): Promise<number> {
    const [{ version_id }] = await t.db.query(`SELECT version_id FROM resource WHERE resource_type = 'Patient' AND id = $1`, [id]);
    return version_id;
  }
  const transactionOf = (resourceJson: string) =>
    `{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:3f1c0a52-55a4-4f0e-9d7e-1b2f0c9a0001","request":{"method":"POST","url":"Patient"},"resource":${resourceJson}}]}`;
  const validateOf = (resourceJson: string) => `{"resourceType":"Parameters","parameter":[{"name":"resource","resource":${resourceJson}}]}`;

  describe('item 9: text that is not Unicode', () => {
    const NOT_UNICODE = /is not valid Unicode: it holds an unpaired UTF-16 surrogate/;
    /** A Patient as JSON text whose family name holds `raw` (JSON source text, e.g. an escape). */
    const patientJson = (value: string, raw: string) => JSON.stringify(mrn(value)).replace('"family":"Müller"', `"family":"M${raw}ller"`);

    it.each([
      ['a lone high surrogate escape', '\\ud800'],
      ['a lone low surrogate escape', '\\udc00'],
      ['two surrogates in the wrong order', '\\udc00\\ud800'],
    ])('refuses %s with 400 naming the element on create, transaction and $validate, storing nothing', async (_name, raw) => {
      const value = `surrogate-${raw}`;
      const create = await t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(patientJson(value, raw));
      expect(create.status).toBe(400);
      expect(create.body.issue).toEqual([
        {
          severity: 'error',
          code: 'invalid',
          diagnostics: expect.stringMatching(NOT_UNICODE),
          expression: ['Patient.name[0].family'],
        },
      ]);
      const transaction = await t.api.post('/fhir').set('Content-Type', FHIR_JSON).send(transactionOf(patientJson(value, raw)));
      expect(transaction.status).toBe(400);
      expect(transaction.body.issue[0]).toMatchObject({ code: 'invalid', expression: ['Bundle.entry[0].resource.name[0].family'] });
      const validate = await t.api.post('/fhir/Patient/$validate').set('Content-Type', FHIR_JSON).send(validateOf(patientJson(value, raw)));
      expect(validate.status).toBe(400);
      expect(validate.body.issue[0]).toMatchObject({ code: 'invalid', expression: ['Parameters.parameter[0].resource.name[0].family'] });
      expect(await storedWithMrn(value)).toBe(0);
    });

    it('refuses a lone surrogate in a JSON Patch value and leaves the resource unchanged', async () => {
      const id = await createPatient('surrogate-patch');
      const res = await t.api
        .patch(`/fhir/Patient/${id}`)
        .set('Content-Type', JSON_PATCH)
        .send('[{"op":"replace","path":"/name/0/family","value":"M\\ud800ller"}]');
      expect(res.status).toBe(400);
      expect(res.body.issue[0]).toMatchObject({ code: 'invalid', expression: ['[0].value'] });
      expect(await versionOf(id)).toBe(1);
    });

    it.each([
      ['a lone continuation byte', [0x80]],
      ['an overlong encoding of "/"', [0xc0, 0xaf]],
      ['an encoded surrogate (CESU-8)', [0xed, 0xa0, 0x80]],
      ['a truncated sequence', [0xe2, 0x82]],
      ['a code point above U+10FFFF', [0xf4, 0x90, 0x80, 0x80]],
    ])('refuses invalid UTF-8 (%s) with 400 naming the element on create and $validate, instead of storing U+FFFD', async (name, bytes) => {
      const value = `utf8-${name}`;
      const [before, after] = patientJson(value, '\u0000').split('\u0000');
      const body = Buffer.concat([Buffer.from(before), Buffer.from(bytes), Buffer.from(after)]);
      const create = await t.api.post('/fhir/Patient').set('Content-Type', 'application/fhir+json; charset=utf-8').serialize(asBytes).send(body);
      expect(create.status).toBe(400);
      expect(create.body.issue).toEqual([
        { severity: 'error', code: 'invalid', diagnostics: expect.stringMatching(NOT_UNICODE), expression: ['Patient.name[0].family'] },
      ]);
      const [vBefore, vAfter] = validateOf(patientJson(value, '\u0000')).split('\u0000');
      const validate = await t.api
        .post('/fhir/Patient/$validate')
        .set('Content-Type', FHIR_JSON)
        .serialize(asBytes)
        .send(Buffer.concat([Buffer.from(vBefore), Buffer.from(bytes), Buffer.from(vAfter)]));
      expect(validate.status).toBe(400);
      expect(validate.body.issue[0]).toMatchObject({ code: 'invalid', expression: ['Parameters.parameter[0].resource.name[0].family'] });
      expect(await storedWithMrn(value)).toBe(0);
    });

    it('stores proper pairs, astral characters and a U+FFFD that was sent as such, unchanged', async () => {
      const family = 'M\u{1F600}ller \u{20BB7} \uFFFD \\ud83d\\ude00';
      const json = patientJson('unicode-ok', '').replace('"family":"Mller"', `"family":${JSON.stringify(family).replace('\\\\ud83d\\\\ude00', '\\ud83d\\ude00')}`);
      const res = await t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(json);
      expect(res.status).toBe(201);
      const read = await t.api.get(`/fhir/Patient/${res.body.id}`);
      expect(read.body.name[0].family).toBe('M\u{1F600}ller \u{20BB7} \uFFFD \u{1F600}');
    });
  });
});
