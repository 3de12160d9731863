import type { AddressInfo } from 'node:net';
import request from 'supertest';
import { captureAuditRecords } from '../support/audit';
import { registerTestClient } from '../support/auth';
import { FHIR_JSON, hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';
import type { AuditRecord } from '../../src/fhir/pipeline/audit-record';

/** Issue 24 (interoperability, second pass) items 1-4, 8-11 and issue 22 items 14, 15 (URL length). */
const ORIGIN = 'https://app.example.org';
const RUN = `interop-${process.pid}-${Date.now().toString(36)}`;

/** Every empty array or empty object in a FHIR JSON document, as JSON paths (json.html: none allowed). */
function emptyValues(value: unknown, path = '$'): string[] {
  if (Array.isArray(value)) return value.length ? value.flatMap((v, i) => emptyValues(v, `${path}[${i}]`)) : [path];
  if (value && typeof value === 'object') {
    const entries = Object.entries(value);
    return entries.length ? entries.flatMap(([k, v]) => emptyValues(v, `${path}.${k}`)) : [path];
  }
  return [];
}

describe('interoperability at the edges (issue 24)', () => {
  let t: TestApp;
  let base: string;
  let audit: AuditRecord[];
  const previousCors = process.env.CORS_ORIGINS;
  beforeAll(async () => {
    process.env.CORS_ORIGINS = ORIGIN;
    t = await createTestApp();
    audit = captureAuditRecords(t.app);
    // A listening server for fetch (which sees compressed bodies as a browser does).
    await new Promise<void>((resolve) => t.http.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(t.http.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    if (previousCors === undefined) delete process.env.CORS_ORIGINS;
    else process.env.CORS_ORIGINS = previousCors;
    await t.close();
  });

  async function createPatient(extra: Record<string, unknown> = {}): Promise<request.Response> {
    const res = await t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(hiePatient({ identifier: [{ system: 'urn:test', value: RUN }], ...extra }));
    expect(res.status).toBe(201);
    return res;
  }

  describe('24.1 SMART discovery at the FHIR base', () => {
    const DOCUMENT = {
      token_endpoint: 'http://localhost:8080/oauth2/token',
      jwks_uri: 'http://localhost:8080/.well-known/jwks.json',
      grant_types_supported: ['client_credentials'],
      token_endpoint_auth_methods_supported: ['private_key_jwt', 'client_secret_basic', 'client_secret_post'],
      token_endpoint_auth_signing_alg_values_supported: ['RS384', 'ES384'],
      scopes_supported: ['system/*.cruds', 'system/*.rs', 'system/*.read', 'system/*.write', 'system/*.*'],
      capabilities: ['client-confidential-asymmetric', 'client-confidential-symmetric', 'permission-v1', 'permission-v2'],
    };

    it.each(['/fhir/.well-known/smart-configuration', '/.well-known/smart-configuration'])('serves the SMART 2.x document at %s without a token', async (path) => {
      const res = await request(t.http).get(path);
      expect(res.status).toBe(200);
      // No `issuer`: SMART 2.x requires it only with sso-openid-connect, which this server does not offer.
      expect(res.body).toEqual(DOCUMENT);
      expect(res.headers['cache-control']).toBe('public, max-age=300');
    });

    it('lets a CORS preflight reach the discovery document', async () => {
      const res = await request(t.http)
        .options('/fhir/.well-known/smart-configuration')
        .set('Origin', ORIGIN)
        .set('Access-Control-Request-Method', 'GET');
      expect(res.status).toBe(204);
      expect(res.headers['access-control-allow-origin']).toBe(ORIGIN);
      const get = await request(t.http).get('/fhir/.well-known/smart-configuration').set('Origin', ORIGIN);
      expect(get.status).toBe(200);
      expect(get.headers['access-control-allow-origin']).toBe(ORIGIN);
    });
  });

  describe('24.2 token request without scope', () => {
    it('grants the registered scopes and says so in the response', async () => {
      const client = await registerTestClient(t, { role: 'hospital', scopes: ['system/Patient.rs', 'system/Observation.rs'] });
      const res = await request(t.http)
        .post('/oauth2/token')
        .type('form')
        .send({ grant_type: 'client_credentials', client_id: client.clientId, client_secret: client.secret });
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ access_token: expect.any(String), token_type: 'bearer', expires_in: expect.any(Number), scope: 'system/Patient.rs system/Observation.rs' });
      const bearer = `Bearer ${res.body.access_token}`;
      expect((await request(t.http).get(`/fhir/Patient?identifier=urn:test|${RUN}`).set('Authorization', bearer)).status).toBe(200);
      const write = await request(t.http).post('/fhir/Patient').set('Authorization', bearer).set('Content-Type', FHIR_JSON).send(hiePatient());
      expect(write.status).toBe(403);
    });

    it('still refuses an empty scope parameter (invalid_scope)', async () => {
      const client = await registerTestClient(t, { role: 'hospital' });
      const res = await request(t.http)
        .post('/oauth2/token')
        .type('form')
        .send({ grant_type: 'client_credentials', client_id: client.clientId, client_secret: client.secret, scope: '' });
      expect(res.status).toBe(400);
      expect(res.body.error).toBe('invalid_scope');
    });
  });

  describe('24.3 If-Modified-Since on read and vread', () => {
    let id: string;
    let lastModified: string;
    beforeAll(async () => {
      const created = await createPatient();
      id = created.body.id;
      lastModified = created.headers['last-modified'];
    });
    const before = (httpDate: string, seconds: number) => new Date(Date.parse(httpDate) - seconds * 1000).toUTCString();

    it.each([
      ['read', () => `/fhir/Patient/${id}`],
      ['vread', () => `/fhir/Patient/${id}/_history/1`],
    ])('%s: 304 when not modified since (one-second precision), 200 when modified after', async (_kind, path) => {
      const same = await t.api.get(path()).set('If-Modified-Since', lastModified);
      expect(same.status).toBe(304);
      expect(same.headers.etag).toBe('W/"1"');
      expect(same.text).toBe('');
      const later = await t.api.get(path()).set('If-Modified-Since', new Date(Date.parse(lastModified) + 60_000).toUTCString());
      expect(later.status).toBe(304);
      // Decided by the server, not only by Express on the way out: the audit record says 304.
      audit.length = 0;
      expect((await t.api.get(path()).set('If-Modified-Since', lastModified)).status).toBe(304);
      expect(audit.map((r) => [r.kind, r.status])).toEqual([[_kind, 304]]);
      const earlier = await t.api.get(path()).set('If-Modified-Since', before(lastModified, 1));
      expect(earlier.status).toBe(200);
      expect(earlier.body.id).toBe(id);
      // Not an HTTP date: ignored (RFC 9110 §13.1.3).
      expect((await t.api.get(path()).set('If-Modified-Since', 'yesterday')).status).toBe(200);
    });

    it('batch entries take request.ifModifiedSince and request.ifNoneMatch', async () => {
      const res = await t.api
        .post('/fhir')
        .set('Content-Type', FHIR_JSON)
        .send({
          resourceType: 'Bundle',
          type: 'batch',
          entry: [
            { request: { method: 'GET', url: `Patient/${id}`, ifModifiedSince: new Date(Date.parse(lastModified)).toISOString() } },
            { request: { method: 'GET', url: `Patient/${id}/_history/1`, ifModifiedSince: new Date(Date.parse(before(lastModified, 1))).toISOString() } },
            { request: { method: 'GET', url: `Patient/${id}/_history/1`, ifNoneMatch: 'W/"1"' } },
          ],
        });
      expect(res.status).toBe(200);
      expect(res.body.entry.map((e: { response: { status: string; etag?: string }; resource?: { id: string } }) => [e.response.status, e.response.etag, e.resource?.id])).toEqual([
        ['304 Not Modified', 'W/"1"', undefined],
        ['200 OK', 'W/"1"', id],
        ['304 Not Modified', 'W/"1"', undefined],
      ]);
    });

    it('If-None-Match takes precedence over If-Modified-Since', async () => {
      const other = await t.api.get(`/fhir/Patient/${id}`).set('If-None-Match', 'W/"7"').set('If-Modified-Since', lastModified);
      expect(other.status).toBe(200);
      const match = await t.api.get(`/fhir/Patient/${id}/_history/1`).set('If-None-Match', 'W/"1"').set('If-Modified-Since', before(lastModified, 3600));
      expect(match.status).toBe(304);
    });
  });

  describe('24.8 no empty arrays or objects in FHIR JSON', () => {
    it('holds for every kind of response', async () => {
      const auditorToken = await (await registerTestClient(t, { role: 'auditor', scopes: ['system/AuditEvent.rs'], purposes: ['HOPERAT'] })).token();
      const p = (await createPatient()).body.id;
      const obs = await t.api.post('/fhir/Observation').set('Content-Type', FHIR_JSON).send({
        resourceType: 'Observation',
        status: 'final',
        code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
        subject: { reference: `Patient/${p}` },
      });
      expect(obs.status).toBe(201);
      const patch = await t.api.patch(`/fhir/Patient/${p}`).set('Content-Type', 'application/json-patch+json').send([{ op: 'replace', path: '/gender', value: 'male' }]);
      expect(patch.status).toBe(200);
      const bundle = (type: string) => ({
        resourceType: 'Bundle',
        type,
        entry: [
          { request: { method: 'GET', url: `Patient/${p}` } },
          { request: { method: 'GET', url: `Patient?identifier=urn:test|nobody-${RUN}` } },
          { fullUrl: 'urn:uuid:7f1a9b52-6a3e-4f43-9f0a-1f6f8f2a1b01', resource: hiePatient(), request: { method: 'POST', url: 'Patient' } },
        ],
      });
      const responses: [string, request.Response][] = [
        ['read', await t.api.get(`/fhir/Patient/${p}`)],
        ['vread', await t.api.get(`/fhir/Patient/${p}/_history/1`)],
        ['search, no match', await t.api.get(`/fhir/Patient?identifier=urn:test|nobody-${RUN}`)],
        ['_summary=count', await t.api.get(`/fhir/Patient?identifier=urn:test|${RUN}&_summary=count`)],
        ['_elements', await t.api.get(`/fhir/Patient?_id=${p}&_elements=gender`)],
        ['_include', await t.api.get(`/fhir/Observation?subject=Patient/${p}&_include=Observation:subject`)],
        ['history, instance', await t.api.get(`/fhir/Patient/${p}/_history`)],
        ['history, since now', await t.api.get(`/fhir/Patient/${p}/_history?_since=${new Date(Date.now() + 60_000).toISOString()}`)],
        ['batch', await t.api.post('/fhir').set('Content-Type', FHIR_JSON).send(bundle('batch'))],
        ['transaction', await t.api.post('/fhir').set('Content-Type', FHIR_JSON).send(bundle('transaction'))],
        ['OperationOutcome, 404', await t.api.get(`/fhir/Patient/missing-${RUN}`)],
        ['OperationOutcome, 400', await t.api.get('/fhir/Patient?birthdate=notadate')],
        ['CapabilityStatement', await request(t.http).get('/fhir/metadata')],
        ['$meta', await t.api.get(`/fhir/Patient/${p}/$meta`)],
        ['$validate', await t.api.post('/fhir/Patient/$validate').set('Content-Type', FHIR_JSON).send(hiePatient())],
        ['$everything', await t.api.get(`/fhir/Patient/${p}/$everything`)],
        ['create with return=OperationOutcome', await t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).set('Prefer', 'return=OperationOutcome').send(hiePatient())],
        ['compartment search, no match', await t.api.get(`/fhir/Patient/${p}/Condition`)],
        ['system search, no match', await t.api.get(`/fhir?_type=Condition,Procedure&_id=none-${RUN}`)],
        ['history, type', await t.api.get('/fhir/Patient/_history?_count=2')],
        ['history, system, since now', await t.api.get(`/fhir/_history?_since=${new Date(Date.now() + 60_000).toISOString()}`)],
        ['$meta, type with nothing in use', await t.api.get('/fhir/Substance/$meta')],
        ['$everything, paged', await t.api.get(`/fhir/Patient/${p}/$everything?_count=1`)],
        ['AuditEvent search, no match', await request(t.http).get(`/fhir/AuditEvent?entity=Patient/none-${RUN}`).set('Authorization', `Bearer ${auditorToken}`)],
        ['$access-report, nothing recorded', await request(t.http).get(`/fhir/Patient/never-${RUN}/$access-report`).set('Authorization', `Bearer ${auditorToken}`)],
      ];
      for (const [kind, res] of responses) {
        expect([kind, res.status < 500, typeof res.body.resourceType]).toEqual([kind, true, 'string']);
        expect([kind, emptyValues(res.body)]).toEqual([kind, []]);
      }
      const body = (kind: string) => responses.find(([k]) => k === kind)![1].body;
      expect(body('_summary=count')).toEqual({ resourceType: 'Bundle', type: 'searchset', total: 2, link: [expect.any(Object)] });
      expect(body('$meta, type with nothing in use')).toEqual({ resourceType: 'Parameters' });
      expect(body('AuditEvent search, no match')).toEqual({ resourceType: 'Bundle', type: 'searchset', link: [expect.objectContaining({ relation: 'self' })] });
      expect(body('$access-report, nothing recorded')).toEqual({ resourceType: 'Bundle', type: 'collection' });
    });
  });

  it('24.9 the CapabilityStatement lists JSON Patch and FHIRPath Patch', async () => {
    const res = await request(t.http).get('/fhir/metadata');
    expect(res.body.patchFormat).toEqual(['application/json-patch+json', 'application/fhir+json']);
  });

  describe('24.10 CORS for browser apps', () => {
    it('exposes the response headers browser code reads', async () => {
      const created = await createPatient();
      const res = await t.api.get(`/fhir/Patient/${created.body.id}`).set('Origin', ORIGIN);
      expect(res.headers['access-control-allow-origin']).toBe(ORIGIN);
      expect(res.headers['access-control-expose-headers']).toBe('ETag,Location,Content-Location,Last-Modified,X-Progress,X-Request-Id,Retry-After');
    });

    it('allows conditional-read headers in a preflight and lets the browser cache it', async () => {
      const res = await request(t.http)
        .options('/fhir/Patient/1')
        .set('Origin', ORIGIN)
        .set('Access-Control-Request-Method', 'GET')
        .set('Access-Control-Request-Headers', 'authorization,if-none-match,if-modified-since');
      expect(res.status).toBe(204);
      expect(res.headers['access-control-allow-headers'].split(',')).toEqual(expect.arrayContaining(['If-None-Match', 'If-Modified-Since', 'Authorization']));
      expect(res.headers['access-control-max-age']).toBe('600');
      // An origin not listed gets no CORS headers.
      const other = await request(t.http).options('/fhir/Patient/1').set('Origin', 'https://evil.example.org').set('Access-Control-Request-Method', 'GET');
      expect(other.headers['access-control-allow-origin']).toBeUndefined();
    });
  });

  describe('24.11 Bundle.total', () => {
    const tag = `total-${RUN}`;
    beforeAll(async () => {
      for (let n = 0; n < 3; n++) await createPatient({ meta: { tag: [{ system: 'urn:test', code: tag }] } });
    });

    it('is given when the page is the first and the last, and with _total=accurate', async () => {
      const all = await t.api.get(`/fhir/Patient?_tag=urn:test|${tag}&_count=10`);
      expect([all.body.total, all.body.entry.length]).toEqual([3, 3]);
      const none = await t.api.get(`/fhir/Patient?_tag=urn:test|nothing-${tag}`);
      expect(none.body.total).toBe(0);
      const first = await t.api.get(`/fhir/Patient?_tag=urn:test|${tag}&_count=2`);
      expect(first.body.entry).toHaveLength(2);
      expect(first.body).not.toHaveProperty('total');
      // The last page after a cursor: keyset paging does not know how many came before, so no total.
      const next = first.body.link.find((l: { relation: string }) => l.relation === 'next').url.replace(/^.*\/fhir\//, '/fhir/');
      const last = await t.api.get(next);
      expect(last.body.entry).toHaveLength(1);
      expect(last.body).not.toHaveProperty('total');
      expect((await t.api.get(`/fhir/Patient?_tag=urn:test|${tag}&_count=2&_total=accurate`)).body.total).toBe(3);
      // _count=0 reads no rows: nothing to count for free.
      expect((await t.api.get(`/fhir/Patient?_tag=urn:test|${tag}&_count=0`)).body).not.toHaveProperty('total');
    });
  });

  describe('22.14 no caching of patient data', () => {
    it('sends Cache-Control: no-store and Pragma: no-cache on data, errors and searches', async () => {
      const created = await createPatient();
      for (const res of [
        created,
        await t.api.get(`/fhir/Patient/${created.body.id}`),
        await t.api.get(`/fhir/Patient?_id=${created.body.id}`),
        await t.api.get(`/fhir/Patient/missing-${RUN}`),
        await request(t.http).get('/fhir/Patient'),
      ]) {
        expect([res.status, res.headers['cache-control'], res.headers.pragma]).toEqual([res.status, 'no-store', 'no-cache']);
      }
    });

    it('lets the CapabilityStatement be cached', async () => {
      const res = await request(t.http).get('/fhir/metadata');
      expect(res.headers['cache-control']).toBe('public, max-age=300');
      expect(res.headers.pragma).toBeUndefined();
    });
  });

  describe('22.15 over-long URLs and headers', () => {
    it('answers a URL over 16 KiB with 414 too-long, audited', async () => {
      audit.length = 0;
      const res = await t.api.get(`/fhir/Patient?name=${'a'.repeat(17 * 1024)}`);
      expect(res.status).toBe(414);
      expect(res.body).toMatchObject({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'too-long' }] });
      expect(res.body.issue[0].diagnostics).toMatch(/longer than 16384 characters.*_search/);
      expect(audit.map((r) => [r.kind, r.outcome, r.status, r.failureCode, r.path])).toEqual([['request', 'failure', 414, 'too-long', '/fhir/Patient']]);
    });

    it('still serves a URL just under the limit', async () => {
      const res = await t.api.get(`/fhir/Patient?identifier=urn:test|${'b'.repeat(15 * 1024)}`);
      expect(res.status).toBe(200);
    });

    it('answers headers beyond what the server parses with a 431 OperationOutcome, audited', async () => {
      audit.length = 0;
      const res = await fetch(`${base}/fhir/Patient`, { headers: { 'X-Filler': 'c'.repeat(70 * 1024) } });
      expect(res.status).toBe(431);
      expect(res.headers.get('content-type')).toBe('application/fhir+json; charset=utf-8');
      expect(await res.json()).toMatchObject({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'too-long' }] });
      await new Promise((r) => setTimeout(r, 50));
      expect(audit.map((r) => [r.kind, r.subtype, r.outcome, r.status, r.failureCode, r.requestId])).toEqual([
        ['request', 'unparsed', 'failure', 431, 'too-long', res.headers.get('x-request-id')],
      ]);
    });
  });

  describe('24.4 compression', () => {
    let token: string;
    const tag = `gzip-${RUN}`;
    beforeAll(async () => {
      token = await (await registerTestClient(t, { role: 'hospital' })).token();
      for (let n = 0; n < 8; n++) await createPatient({ meta: { tag: [{ system: 'urn:test', code: tag }] } });
    });

    it.each(['gzip', 'br'])('compresses a search page of 1 KiB or more with %s', async (encoding) => {
      const res = await fetch(`${base}/fhir/Patient?_tag=urn:test|${tag}`, { headers: { Authorization: `Bearer ${token}`, 'Accept-Encoding': encoding } });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-encoding')).toBe(encoding);
      expect(res.headers.get('vary')).toMatch(/Accept-Encoding/);
      const body = (await res.json()) as { total: number; entry: unknown[] };
      expect([body.total, body.entry.length]).toEqual([8, 8]);
    });

    it('compresses a page in one call (a Content-Length, not chunked), the client’s order deciding a tie', async () => {
      const url = `/fhir/Patient?_tag=urn:test|${tag}`;
      const res = await request(t.http).get(url).set('Authorization', `Bearer ${token}`).set('Accept-Encoding', 'gzip, br');
      expect(res.status).toBe(200);
      expect(res.headers['content-encoding']).toBe('gzip');
      expect(res.headers['transfer-encoding']).toBeUndefined();
      expect(Number(res.headers['content-length'])).toBeGreaterThan(0);
      expect((res.body as { entry: unknown[] }).entry).toHaveLength(8);
      const br = await request(t.http).get(url).set('Authorization', `Bearer ${token}`).set('Accept-Encoding', 'br;q=1, gzip;q=0.5');
      expect(br.headers['content-encoding']).toBe('br');
      // deflate alone is left to the streaming middleware.
      const deflate = await request(t.http).get(url).set('Authorization', `Bearer ${token}`).set('Accept-Encoding', 'deflate');
      expect([deflate.status, deflate.headers['content-encoding'], deflate.headers['transfer-encoding']]).toEqual([200, 'deflate', 'chunked']);
      expect((deflate.body as { entry: unknown[] }).entry).toHaveLength(8);
    });

    it('sends small bodies and clients without Accept-Encoding uncompressed', async () => {
      const small = await fetch(`${base}/fhir/Patient/missing-${RUN}`, { headers: { Authorization: `Bearer ${token}`, 'Accept-Encoding': 'gzip' } });
      expect(small.status).toBe(404);
      expect(small.headers.get('content-encoding')).toBeNull();
      const plain = await fetch(`${base}/fhir/Patient?_tag=urn:test|${tag}`, { headers: { Authorization: `Bearer ${token}`, 'Accept-Encoding': 'identity' } });
      expect(plain.headers.get('content-encoding')).toBeNull();
      expect(((await plain.json()) as { entry: unknown[] }).entry).toHaveLength(8);
    });

    it('streams the audit NDJSON export compressed, every line intact', async () => {
      const auditor = await registerTestClient(t, { role: 'auditor', scopes: ['system/AuditEvent.rs'], purposes: ['HOPERAT'] });
      const auditorToken = await auditor.token();
      const range = `since=2020-01-01&until=${encodeURIComponent(new Date(Date.now() + 3_600_000).toISOString())}`;
      const plain = await fetch(`${base}/audit/export?${range}`, { headers: { Authorization: `Bearer ${auditorToken}`, 'Accept-Encoding': 'identity' } });
      const plainLines = (await plain.text()).trim().split('\n');
      const gz = await fetch(`${base}/audit/export?${range}`, { headers: { Authorization: `Bearer ${auditorToken}`, 'Accept-Encoding': 'gzip' } });
      expect(gz.status).toBe(200);
      expect(gz.headers.get('content-encoding')).toBe('gzip');
      const lines = (await gz.text()).trim().split('\n');
      // The second export also holds the record of the first export.
      expect(lines.length).toBe(plainLines.length + 1);
      expect(lines).toEqual(expect.arrayContaining(plainLines));
      for (const line of lines) expect(JSON.parse(line).resourceType).toBe('AuditEvent');
    });
  });
});
