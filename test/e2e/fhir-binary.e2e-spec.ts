import { randomBytes } from 'node:crypto';
import request from 'supertest';
import { registerTestClient } from '../support/auth';
import { FHIR_JSON, hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';
import { consentResource } from '../support/consent';

const RUN = Date.now().toString(36);
const ORG_A = `binary-a-${RUN}`;
const ORG_B = `binary-b-${RUN}`;

/** A small PDF-like body with every byte value, so any text decoding on the way would show. */
const PDF = Buffer.concat([
  Buffer.from('%PDF-1.4\n%\xe2\xe3\xcf\xd3\n', 'latin1'),
  Buffer.from(Array.from({ length: 256 }, (_, i) => i)),
  randomBytes(4096),
  Buffer.from('\n%%EOF\n'),
]);

type Send = (m: 'get' | 'post' | 'put', path: string) => request.Test;

function rawBody(res: request.Response, cb: (err: Error | null, body: Buffer) => void): void {
  const chunks: Buffer[] = [];
  res.on('data', (c: Buffer) => chunks.push(c));
  res.on('end', () => cb(null, Buffer.concat(chunks)));
}

/**
 * Binary in its native format (R4 http.html#binary): a raw body becomes a Binary, a read that asks
 * for the Binary's type gets the bytes back, and Binary.securityContext decides who may read it.
 */
describe('Binary in its native format', () => {
  let t: TestApp;
  let a: Send;
  let b: Send;
  const previousLimit = process.env.BINARY_LIMIT;

  beforeAll(async () => {
    process.env.BINARY_LIMIT = '3mb';
    t = await createTestApp();
    const as = async (organization: string): Promise<Send> => {
      const token = await (await registerTestClient(t, { role: 'hospital', organization })).token();
      return (m, path) => request(t.http)[m](path).set('Authorization', `Bearer ${token}`);
    };
    a = await as(ORG_A);
    b = await as(ORG_B);
  });
  afterAll(async () => {
    if (previousLimit === undefined) delete process.env.BINARY_LIMIT;
    else process.env.BINARY_LIMIT = previousLimit;
    await t.close();
  });

  async function created(res: request.Response): Promise<string> {
    if (res.status !== 201) throw new Error(`create: ${res.status} ${res.text.slice(0, 500)}`);
    return res.body.id as string;
  }

  async function documentFor(): Promise<{ patient: string; document: string }> {
    const patient = await created(await a('post', '/fhir/Patient').set('Content-Type', FHIR_JSON).send(hiePatient({ name: [{ family: `Binary${RUN}` }] })));
    const document = await created(
      await a('post', '/fhir/DocumentReference')
        .set('Content-Type', FHIR_JSON)
        .send({ resourceType: 'DocumentReference', status: 'current', subject: { reference: `Patient/${patient}` }, content: [{ attachment: { contentType: 'application/pdf' } }] }),
    );
    return { patient, document };
  }

  async function storedBinary(id: string): Promise<{ content: Record<string, unknown>; author_org: string }> {
    const [row] = await t.db.query(`SELECT content, author_org FROM resource WHERE resource_type = 'Binary' AND id = $1`, [id]);
    return row;
  }

  it('POST a PDF stores a Binary (contentType, base64 data, X-Security-Context) and the read with Accept: application/pdf gives the same bytes', async () => {
    const { document } = await documentFor();
    const res = await a('post', '/fhir/Binary').set('Content-Type', 'application/pdf').set('X-Security-Context', `DocumentReference/${document}`).send(PDF);
    expect(res.status).toBe(201);
    expect(res.headers['content-type']).toBe('application/fhir+json; charset=utf-8');
    expect(res.body).toMatchObject({ resourceType: 'Binary', contentType: 'application/pdf', securityContext: { reference: `DocumentReference/${document}` } });
    const id = res.body.id as string;
    const stored = await storedBinary(id);
    expect(stored.author_org).toBe(ORG_A);
    expect(stored.content.data).toBe(PDF.toString('base64'));

    const raw = await a('get', `/fhir/Binary/${id}`).set('Accept', 'application/pdf').buffer(true).parse(rawBody);
    expect(raw.status).toBe(200);
    expect(raw.headers['content-type']).toBe('application/pdf');
    expect(raw.headers['content-length']).toBe(String(PDF.length));
    expect(raw.headers['x-security-context']).toBe(`DocumentReference/${document}`);
    expect(raw.headers['content-security-policy']).toBe("sandbox; default-src 'none'");
    expect(raw.headers.etag).toBe('W/"1"');
    expect(Buffer.compare(raw.body as Buffer, PDF)).toBe(0);

    // vread too, and `application/*` names the type by a wildcard that still prefers it to nothing else.
    const vread = await a('get', `/fhir/Binary/${id}/_history/1`).set('Accept', 'application/pdf').buffer(true).parse(rawBody);
    expect(Buffer.compare(vread.body as Buffer, PDF)).toBe(0);
  });

  it('answers FHIR JSON for FHIR types, no Accept, _format or a tie; 406 for a type that is neither', async () => {
    const id = await created(await a('post', '/fhir/Binary').set('Content-Type', 'application/pdf').send(PDF));
    for (const [accept, path] of [
      [undefined, `/fhir/Binary/${id}`],
      [FHIR_JSON, `/fhir/Binary/${id}`],
      ['application/pdf', `/fhir/Binary/${id}?_format=json`],
      ['application/pdf;q=0.5, application/fhir+json', `/fhir/Binary/${id}`],
    ] as const) {
      const req = a('get', path);
      const res = await (accept ? req.set('Accept', accept) : req);
      expect([accept, res.status, res.headers['content-type'], res.body.resourceType, res.body.data]).toEqual([
        accept,
        200,
        'application/fhir+json; charset=utf-8',
        'Binary',
        PDF.toString('base64'),
      ]);
    }
    const xml = await a('get', `/fhir/Binary/${id}`).set('Accept', 'application/fhir+xml');
    expect(xml.text).toContain(`<contentType value="application/pdf"/><data value="${PDF.toString('base64')}"/>`);
    const png = await a('get', `/fhir/Binary/${id}`).set('Accept', 'image/png');
    expect([png.status, png.body.issue[0].code, png.body.issue[0].diagnostics]).toEqual([
      406,
      'not-supported',
      "None of the accepted media types is this Binary's (application/pdf) or a FHIR format",
    ]);
    // Only a read or vread of one Binary answers natively: searches, history and other types stay 406.
    for (const path of ['/fhir/Patient', '/fhir/Binary', '/fhir/Binary/_history', `/fhir/Binary/${id}/_history`]) {
      expect([path, (await a('get', path).set('Accept', 'application/pdf')).status]).toEqual([path, 406]);
    }
  });

  it('PUT a raw body updates the Binary; a raw body on another type stays 415; a bad X-Security-Context is 400', async () => {
    const id = await created(await a('post', '/fhir/Binary').set('Content-Type', 'text/plain; charset=utf-8').send('first version'));
    const put = await a('put', `/fhir/Binary/${id}`).set('Content-Type', 'text/plain; charset=utf-8').send('second version');
    expect([put.status, put.body.id, put.body.meta.versionId, put.body.contentType]).toEqual([200, id, '2', 'text/plain; charset=utf-8']);
    const raw = await a('get', `/fhir/Binary/${id}`).set('Accept', 'text/plain');
    expect([raw.headers['content-type'], raw.text]).toEqual(['text/plain; charset=utf-8', 'second version']);

    const other = await a('post', '/fhir/DocumentReference').set('Content-Type', 'application/pdf').send(PDF);
    expect([other.status, other.body.issue[0].expression]).toEqual([415, ['Content-Type']]);
    const [{ count: before }] = await t.db.query(`SELECT count(*)::int AS count FROM resource WHERE resource_type = 'Binary'`);
    const bad = await a('post', '/fhir/Binary').set('Content-Type', 'application/pdf').set('X-Security-Context', 'http://elsewhere.example.org/x y').send(PDF);
    expect([bad.status, bad.body.issue[0].code, bad.body.issue[0].expression]).toEqual([400, 'invalid', ['X-Security-Context']]);
    const [{ count: after }] = await t.db.query(`SELECT count(*)::int AS count FROM resource WHERE resource_type = 'Binary'`);
    expect(after).toBe(before);
  });

  it('bounds the size by BINARY_LIMIT (413, nothing stored) and streams a large Binary back byte for byte', async () => {
    const large = randomBytes(2.5 * 1024 * 1024);
    const id = await created(await a('post', '/fhir/Binary').set('Content-Type', 'application/octet-stream').send(large));
    const raw = await a('get', `/fhir/Binary/${id}`).set('Accept', 'application/octet-stream').buffer(true).parse(rawBody);
    expect(raw.status).toBe(200);
    expect(Buffer.compare(raw.body as Buffer, large)).toBe(0);

    const [{ count: before }] = await t.db.query(`SELECT count(*)::int AS count FROM resource WHERE resource_type = 'Binary'`);
    const tooLarge = await a('post', '/fhir/Binary').set('Content-Type', 'application/octet-stream').send(randomBytes(3 * 1024 * 1024 + 1));
    expect([tooLarge.status, tooLarge.body.issue[0].code]).toEqual([413, 'too-long']);
    const [{ count: after }] = await t.db.query(`SELECT count(*)::int AS count FROM resource WHERE resource_type = 'Binary'`);
    expect(after).toBe(before);
  });

  it('securityContext decides access: the referenced resource\'s consent for others, the custodian only without one', async () => {
    const { patient, document } = await documentFor();
    const withContext = await created(
      await a('post', '/fhir/Binary').set('Content-Type', 'application/pdf').set('X-Security-Context', `DocumentReference/${document}`).send(PDF),
    );
    const without = await created(await a('post', '/fhir/Binary').set('Content-Type', 'application/pdf').send(PDF));

    // Opt-out policy, purpose TREAT: organization B may read the DocumentReference, so the Binary too.
    expect((await b('get', `/fhir/DocumentReference/${document}`)).status).toBe(200);
    const shared = await b('get', `/fhir/Binary/${withContext}`).set('Accept', 'application/pdf').buffer(true).parse(rawBody);
    expect(shared.status).toBe(200);
    expect(Buffer.compare(shared.body as Buffer, PDF)).toBe(0);
    // Without a securityContext only the custodian (organization A) reads it, by id or by search.
    expect((await b('get', `/fhir/Binary/${without}`)).status).toBe(404);
    expect((await a('get', `/fhir/Binary/${without}`)).status).toBe(200);
    const search = await b('get', `/fhir/Binary?_id=${withContext},${without}`);
    expect(search.body.entry.map((e: { resource: { id: string } }) => e.resource.id)).toEqual([withContext]);

    // The patient denies sharing: the DocumentReference and with it the Binary are closed to B.
    await created(
      await a('post', '/fhir/Consent')
        .set('Content-Type', FHIR_JSON)
        .send(consentResource(patient)),
    );
    expect((await b('get', `/fhir/DocumentReference/${document}`)).status).toBe(404);
    expect((await b('get', `/fhir/Binary/${withContext}`).set('Accept', 'application/pdf')).status).toBe(404);
    expect((await b('get', `/fhir/Binary/${withContext}/_history/1`)).status).toBe(404);
    // The custodian keeps its own Binary.
    expect((await a('get', `/fhir/Binary/${withContext}`)).status).toBe(200);
  });
});
