import { createHash } from 'node:crypto';
import request from 'supertest';
import { AuditStage } from '../../src/fhir/pipeline/pipeline.stages';
import { captureAuditRecords } from '../support/audit';
import { FHIR_JSON, hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

const SYS = 'http://hospital-sec.example.org/mrn';
const JSON_PATCH = 'application/json-patch+json';
/** Names every JS object has through Object.prototype: never FHIR elements. */
const PROTOTYPE_KEYS = ['__proto__', 'constructor', 'toString', 'hasOwnProperty'];

/** Malformed input (issue 9, items 8, 9, 10, 15): 4xx with an OperationOutcome, nothing stored or changed. */
describe('malformed input', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t.close());

  const mrn = (value: string) => hiePatient({ identifier: [{ system: SYS, value }] });
  async function storedWithMrn(value: string): Promise<number> {
    const [{ n }] = await t.db.query(
      `SELECT count(*)::int AS n FROM resource_history WHERE content->'identifier'->0->>'value' = $1`,
      [value],
    );
    return n;
  }
  async function counts(): Promise<{ resources: number; versions: number }> {
    const [row] = await t.db.query(`SELECT (SELECT count(*)::int FROM resource) AS resources, (SELECT count(*)::int FROM resource_history) AS versions`);
    return row;
  }
  async function createPatient(value: string): Promise<string> {
    const res = await t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(mrn(value));
    expect(res.status).toBe(201);
    return res.body.id;
  }
  /** A Patient as JSON text with `"key": value` spliced in where `at` says (object literals cannot hold `__proto__`). */
  function patientJsonWith(value: string, key: string, at: 'root' | 'name'): string {
    const json = JSON.stringify(mrn(value));
    const member = `${JSON.stringify(key)}: {"family": "x"}`;
    return at === 'root' ? json.replace(/^\{/, `{${member}, `) : json.replace('"name":[{', `"name":[{${member}, `);
  }

  describe('item 8: Object.prototype keys are unknown elements', () => {
    for (const key of PROTOTYPE_KEYS) {
      it(`refuses "${key}" at the root and nested in a create, storing nothing`, async () => {
        for (const [at, path] of [['root', `Patient.${key}`], ['name', `Patient.name[0].${key}`]] as const) {
          const value = `proto-${key}-${at}`;
          const res = await t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(patientJsonWith(value, key, at));
          expect(res.status).toBe(400);
          expect(res.body.resourceType).toBe('OperationOutcome');
          expect(res.body.issue[0].code).toBe('structure');
          expect(res.body.issue[0].expression).toEqual([path]);
          expect(res.body.issue[0].diagnostics).toContain(`'${key}'`);
          expect(await storedWithMrn(value)).toBe(0);
        }
      });
    }

    it('refuses such keys inside a transaction entry and a batch entry, storing nothing', async () => {
      const before = await counts();
      for (const type of ['transaction', 'batch']) {
        const body = `{"resourceType":"Bundle","type":"${type}","entry":[{"request":{"method":"POST","url":"Patient"},"resource":${patientJsonWith(`proto-bundle-${type}`, 'constructor', 'name')}}]}`;
        const res = await t.api.post('/fhir').set('Content-Type', FHIR_JSON).send(body);
        expect(res.status).toBe(400);
        expect(res.body.issue[0].code).toBe('structure');
        expect(res.body.issue[0].expression).toEqual(['Bundle.entry[0].resource.name[0].constructor']);
      }
      expect(await counts()).toEqual(before);
    });

    it('refuses them in a JSON Patch (as value or path) and leaves the resource unchanged', async () => {
      const id = await createPatient('proto-patch');
      const patches = [
        '[{"op":"add","path":"/extension","value":[{"url":"http://example.org/x","toString":"x"}]}]',
        '[{"op":"add","path":"/__proto__","value":{"polluted":true}}]',
        '[{"op":"add","path":"/name/0/hasOwnProperty","value":"x"}]',
        '[{"op":"add","path":"/constructor","value":{"family":"x"}}]',
      ];
      for (const patch of patches) {
        const res = await t.api.patch(`/fhir/Patient/${id}`).set('Content-Type', JSON_PATCH).send(patch);
        expect(res.status).toBe(400);
        expect(res.body.resourceType).toBe('OperationOutcome');
        expect(res.body.issue[0].code).toBe('structure');
      }
      const read = await t.api.get(`/fhir/Patient/${id}`);
      expect(read.body.meta.versionId).toBe('1');
      expect(Object.keys(read.body).sort()).toEqual(['birthDate', 'gender', 'id', 'identifier', 'meta', 'name', 'resourceType']);
      expect(({} as { polluted?: boolean }).polluted).toBeUndefined();
    });

    it('answers 400, not 500, to a PATCH of a resource stored with such a key before they were refused', async () => {
      const id = await createPatient('proto-legacy');
      await t.db.query(`UPDATE resource SET content = content || '{"toString": "x", "constructor": {"a": 1}, "__proto__": {"b": 2}}' WHERE resource_type = 'Patient' AND id = $1`, [id]);
      for (const patch of ['[{"op":"replace","path":"/birthDate","value":"1981-01-01"}]', '[{"op":"remove","path":"/toString"}]']) {
        const res = await t.api.patch(`/fhir/Patient/${id}`).set('Content-Type', JSON_PATCH).send(patch);
        expect(res.status).toBe(400);
        expect(res.body.issue[0].code).toBe('structure');
      }
      const [{ version_id }] = await t.db.query(`SELECT version_id FROM resource WHERE resource_type = 'Patient' AND id = $1`, [id]);
      expect(version_id).toBe(1);
    });
  });

  describe('item 9: no 500s', () => {
    it('answers 401 to Basic credentials with broken percent-encoding, and still counts and audits the request', async () => {
      const records = captureAuditRecords(t.app);
      try {
        const user = `broken%E0%A4%A-${Date.now()}`;
        const res = await request(t.http)
          .post('/oauth2/token')
          .set('Authorization', `Basic ${Buffer.from(`${user}:secret%`).toString('base64')}`)
          .type('form')
          .send({ grant_type: 'client_credentials', scope: 'system/*.rs' });
        expect(res.status).toBe(401);
        expect(res.body).toEqual({
          resourceType: 'OperationOutcome',
          issue: [{ severity: 'error', code: 'login', diagnostics: 'The Basic credentials are not correctly percent-encoded (RFC 6749 section 2.3.1)', expression: ['Authorization'] }],
        });
        expect(res.headers['www-authenticate']).toBe('Basic realm="token"');
        expect(records.map((r) => [r.kind, r.outcome, r.status, r.principal.kind])).toEqual([['token', 'failure', 401, 'anonymous']]);
        // Counted as a failed attempt of its address and the client id it names (undecoded), like any refused token request.
        const keys = ['::ffff:127.0.0.1', '127.0.0.1', '::1'].map(
          (address) => `default:${createHash('sha256').update(`default-token-failed-address-client:${address} ${user}`).digest('hex')}`,
        );
        expect(await t.db.query(`SELECT hits FROM rate_limit_window WHERE key = ANY($1)`, [keys])).toEqual([{ hits: 1 }]);
      } finally {
        jest.mocked(t.app.get(AuditStage, { strict: false }).record).mockRestore();
      }
    });

    it('answers 400 naming the parameter to a NUL byte in a search value, a modifier value, _has and conditional criteria', async () => {
      for (const [query, name] of [
        ['name=a%00b', 'name'],
        ['identifier=x%7Cy%00', 'identifier'],
        ['name:contains=%00', 'name:contains'],
        ['_has:Observation:patient:code=%00', '_has:Observation:patient:code'],
        ['_sort=%00', '_sort'],
      ]) {
        const res = await t.api.get(`/fhir/Patient?${query}`);
        expect(res.status).toBe(400);
        expect(res.body.resourceType).toBe('OperationOutcome');
        expect(res.body.issue[0].code).toBe('invalid');
        expect(res.body.issue[0].expression).toEqual([name]);
        expect(res.body.issue[0].diagnostics).toMatch(/NUL/);
      }
      const before = await counts();
      const put = await t.api.put(`/fhir/Patient?identifier=${encodeURIComponent(SYS)}%7Cnul%00`).set('Content-Type', FHIR_JSON).send(mrn('nul-conditional'));
      expect(put.status).toBe(400);
      expect(put.body.issue[0].expression).toEqual(['identifier']);
      expect(await counts()).toEqual(before);
    });

    it('answers 400 to a NUL character in a resource string, storing nothing', async () => {
      const res = await t.api
        .post('/fhir/Patient')
        .set('Content-Type', FHIR_JSON)
        .send(JSON.stringify(mrn('nul-body')).replace('"family":"Müller"', '"family":"M\\u0000ller"'));
      expect(res.status).toBe(400);
      expect(res.body.issue[0].code).toBe('structure');
      expect(res.body.issue[0].expression).toEqual(['Patient.name[0].family']);
      expect(await storedWithMrn('nul-body')).toBe(0);
    });

    it('answers 400 too-costly to JSON nested 10,000 deep, storing nothing', async () => {
      const deep = '{"url":"http://example.org/x","extension":['.repeat(10_000) + '{"url":"http://example.org/x","valueString":"x"}' + ']}'.repeat(10_000);
      const body = JSON.stringify(mrn('deep-json')).replace(/^\{/, `{"extension":[${deep}],`);
      const res = await t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(body);
      expect(res.status).toBe(400);
      expect(res.body.resourceType).toBe('OperationOutcome');
      expect(res.body.issue[0].code).toBe('too-costly');
      expect(res.body.issue[0].diagnostics).toMatch(/nested more than 100 levels/);
      expect(await storedWithMrn('deep-json')).toBe(0);
      // The same as a batch: one answer for the Bundle, nothing stored.
      const bundle = `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"POST","url":"Patient"},"resource":${body}}]}`;
      const batch = await t.api.post('/fhir').set('Content-Type', FHIR_JSON).send(bundle);
      expect(batch.status).toBe(400);
      expect(batch.body.issue[0].code).toBe('too-costly');
      expect(await storedWithMrn('deep-json')).toBe(0);
    });
  });

  describe('item 10: FHIR writes take FHIR JSON only', () => {
    it('answers 415 to a form-encoded create, update, patch and Bundle, storing and changing nothing', async () => {
      const id = await createPatient('form-target');
      const before = await counts();
      const form = 'resourceType=Patient&gender=male&id=' + id;
      for (const [method, path] of [
        ['post', '/fhir/Patient'],
        ['put', `/fhir/Patient/${id}`],
        ['patch', `/fhir/Patient/${id}`],
        ['post', '/fhir'],
        ['put', '/fhir/Patient?identifier=x'],
      ] as const) {
        const res = await t.api[method](path).set('Content-Type', 'application/x-www-form-urlencoded').send(form);
        expect([method, path, res.status]).toEqual([method, path, 415]);
        expect(res.body.issue[0].code).toBe('not-supported');
        expect(res.body.issue[0].diagnostics).toMatch(/application\/fhir\+json/);
      }
      expect(await counts()).toEqual(before);
      expect((await t.api.get(`/fhir/Patient/${id}`)).body.meta.versionId).toBe('1');
    });

    it('answers 415 to a JSON Patch media type on create and update', async () => {
      const before = await counts();
      const res = await t.api.post('/fhir/Patient').set('Content-Type', JSON_PATCH).send(mrn('patch-type-create'));
      expect(res.status).toBe(415);
      expect(res.body.issue[0].code).toBe('not-supported');
      expect(await counts()).toEqual(before);
    });

    it('still takes a form-encoded search by POST', async () => {
      await createPatient('form-search');
      const res = await t.api.post('/fhir/Patient/_search').type('form').send({ identifier: `${SYS}|form-search` });
      expect(res.status).toBe(200);
      expect(res.body.total ?? res.body.entry.length).toBe(1);
    });
  });

  describe('item 15: batch entries', () => {
    it('fails only the entry whose request.url cannot be parsed; the others run', async () => {
      const id = await createPatient('batch-bad-url');
      const before = await counts();
      const res = await t.api
        .post('/fhir')
        .set('Content-Type', FHIR_JSON)
        .send({
          resourceType: 'Bundle',
          type: 'batch',
          entry: [
            { request: { method: 'GET', url: 'Spaceship/1' } },
            { request: { method: 'GET', url: `Patient/${id}` } },
            { request: { method: 'GET', url: 'Patient/not an id!' } },
            { request: { method: 'GET', url: `Patient/${id}/_history/1/extra` } },
            { request: { method: 'TRACE', url: `Patient/${id}` } },
            { request: { method: 'POST', url: 'Patient' }, resource: mrn('batch-bad-url-created') },
          ],
        });
      expect(res.status).toBe(200);
      expect(res.body.type).toBe('batch-response');
      const statuses = res.body.entry.map((e: { response: { status: string } }) => e.response.status);
      expect(statuses).toEqual(['404', '200 OK', '400', '400', '400', '201 Created']);
      expect(res.body.entry[0].response.outcome.issue[0]).toMatchObject({ code: 'not-supported', expression: ['Bundle.entry[0].request.url', 'Bundle.entry[0]'] });
      expect(res.body.entry[2].response.outcome.issue[0].code).toBe('invalid');
      expect(res.body.entry[1].resource.id).toBe(id);
      expect(await counts()).toEqual({ resources: before.resources + 1, versions: before.versions + 1 });
    });

    it('fails only an entry that is not an object', async () => {
      const res = await t.api
        .post('/fhir')
        .set('Content-Type', FHIR_JSON)
        .send({ resourceType: 'Bundle', type: 'batch', entry: [null, 'x', { request: { method: 'GET', url: 'Patient?_count=1' } }] });
      expect(res.status).toBe(200);
      expect(res.body.entry.map((e: { response: { status: string } }) => e.response.status)).toEqual(['400', '400', '200 OK']);
      expect(res.body.entry[0].response.outcome.issue[0]).toMatchObject({ code: 'structure', expression: ['Bundle.entry[0]'] });
    });

    it('fails a whole transaction with an unparsable entry url, naming the entry, storing nothing', async () => {
      const before = await counts();
      const res = await t.api
        .post('/fhir')
        .set('Content-Type', FHIR_JSON)
        .send({
          resourceType: 'Bundle',
          type: 'transaction',
          entry: [
            { request: { method: 'POST', url: 'Patient' }, resource: mrn('tx-bad-url') },
            { request: { method: 'GET', url: 'Spaceship/1' } },
          ],
        });
      expect(res.status).toBe(404);
      expect(res.body.issue[0].diagnostics).toMatch(/^Bundle\.entry\[1\]: Unknown resource type 'Spaceship'/);
      expect(await counts()).toEqual(before);
    });

    it('runs GET Patient/x/Observation inside a batch and a transaction as a compartment search', async () => {
      const id = await createPatient('batch-compartment');
      const other = await createPatient('batch-compartment-other');
      const observation = (patient: string) => ({
        resourceType: 'Observation',
        status: 'final',
        code: { coding: [{ system: 'http://loinc.org', code: '29463-7' }] },
        subject: { reference: `Patient/${patient}` },
      });
      for (const patient of [id, other]) {
        expect((await t.api.post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(observation(patient))).status).toBe(201);
      }
      for (const type of ['batch', 'transaction']) {
        const res = await t.api
          .post('/fhir')
          .set('Content-Type', FHIR_JSON)
          .send({ resourceType: 'Bundle', type, entry: [{ request: { method: 'GET', url: `Patient/${id}/Observation?code=29463-7` } }] });
        expect(res.status).toBe(200);
        const entry = res.body.entry[0];
        expect(entry.response.status).toBe('200 OK');
        expect(entry.resource.resourceType).toBe('Bundle');
        expect(entry.resource.type).toBe('searchset');
        expect(entry.resource.entry.map((e: { resource: { resourceType: string; subject: { reference: string } } }) => [e.resource.resourceType, e.resource.subject.reference])).toEqual([
          ['Observation', `Patient/${id}`],
        ]);
      }
      // Outside the Patient compartment, as over REST.
      const res = await t.api
        .post('/fhir')
        .set('Content-Type', FHIR_JSON)
        .send({ resourceType: 'Bundle', type: 'batch', entry: [{ request: { method: 'GET', url: `Patient/${id}/Organization` } }] });
      expect(res.body.entry[0].response.status).toBe('400');
      expect(res.body.entry[0].response.outcome.issue[0].diagnostics).toMatch(/Organization is not in the Patient compartment/);
    });
  });
});
