import { createHash, randomBytes, scryptSync } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import request from 'supertest';
import { ThrottlerStorage } from '@nestjs/throttler';
import { PostgresThrottlerStorage } from '../../src/auth/rate-limit.storage';
import { ClientRegistrationRepository } from '../../src/auth/client-registration.repository';
import { SigningKeyStore } from '../../src/auth/signing-key.store';
import { runCli } from '../../src/cli/cli';
import { ClientJwksPublicOnly1732400000801 } from '../../migrations/1732400000801-client-jwks-public-only';
import { registerTestClient, TestClient } from '../support/auth';
import { createTestApp, TestApp } from '../support/test-app';

/**
 * Security findings of issue 9 on authentication: the token endpoint's rate limits (item 4), client
 * secret verification (4), required access-token claims (11) and public-only client JWKS (12).
 *
 * Requests of "other" source addresses come from other loopback addresses (127.0.0.x), so the
 * failures they cause never count against 127.0.0.1, which the other test files use.
 */
interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Record<string, unknown>;
}

/** A token request from `localAddress` over a small keep-alive pool (bounded concurrency). */
function tokenRequestFrom(
  agent: http.Agent,
  port: number,
  form: Record<string, string>,
  headers: Record<string, string> = {},
): Promise<Answer> {
  const body = new URLSearchParams(form).toString();
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method: 'POST', path: '/oauth2/token', agent, headers: { 'Content-Type': 'application/x-www-form-urlencoded', 'Content-Length': Buffer.byteLength(body), ...headers } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text ? JSON.parse(text) : {} }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const basic = (id: string, secret: string) => ({ Authorization: `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}` });

/** The rate_limit_window key of a client's own token budget (see TokenEndpointThrottle). */
const clientTokenBudgetKey = (clientId: string) => `default:${createHash('sha256').update(`default-token-client:${clientId}`).digest('hex')}`;

describe('token endpoint rate limits (issue 9, item 4)', () => {
  let t: TestApp;
  let port: number;
  const agents: http.Agent[] = [];
  /** A keep-alive pool whose connections come from this loopback address. */
  const from = (localAddress: string, maxSockets = 1) => {
    const agent = new http.Agent({ keepAlive: true, maxSockets, localAddress });
    agents.push(agent);
    return agent;
  };

  beforeAll(async () => {
    t = await createTestApp();
    await t.app.listen(0, '127.0.0.1');
    port = (t.http.address() as AddressInfo).port;
    // Counters are shared by every test file in this minute; start (and leave) them empty.
    await t.db.query('TRUNCATE rate_limit_window');
    // One pinned window, half a minute in: 1,500 requests on a loaded machine can take longer than
    // the rest of a wall-clock minute, and a new window would restart the counts mid-test.
    (t.app.get(ThrottlerStorage) as PostgresThrottlerStorage).clock = () => new Date('2026-01-05T11:00:30.000Z');
  });
  afterAll(async () => {
    for (const agent of agents) agent.destroy();
    await t.db.query('TRUNCATE rate_limit_window');
    await t.close();
  });

  it('1,500 bad token requests claiming a real client’s id leave that client able to get a token at once', async () => {
    const victim = await registerTestClient(t, { role: 'hospital', scopes: ['system/Patient.rs'] });
    const [before] = await t.db.query(`SELECT secret_hash, disabled, updated_at FROM oauth_client WHERE client_id = $1`, [victim.clientId]);
    const attacker = from('127.0.0.2', 16);
    // `curl -u victim:wrong -d grant_type=bogus`, as in the probe: first one at a time, so the
    // count is exact, then the rest 16 at a time.
    const bogus = () => tokenRequestFrom(attacker, port, { grant_type: 'bogus' }, basic(victim.clientId, 'wrong'));
    const first: Answer[] = [];
    for (let n = 0; n < 30; n++) first.push(await bogus());
    expect(first.slice(0, 20).map((a) => [a.status, a.body.error])).toEqual(Array(20).fill([400, 'unsupported_grant_type']));
    // The 21st failure for this (address, claimed id) is refused before anything is verified.
    const refused = first[20];
    expect(refused.status).toBe(429);
    expect(refused.body).toMatchObject({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'throttled', diagnostics: 'Too many failed token requests from this address; retry later' }] });
    expect(refused.headers['retry-after']).toMatch(/^\d+$/);
    expect(first.slice(20).every((a) => a.status === 429)).toBe(true);
    const statuses = new Map<number, number>();
    for (let sent = 30; sent < 1500; sent += 16) {
      const batch = await Promise.all(Array.from({ length: Math.min(16, 1500 - sent) }, bogus));
      for (const a of batch) statuses.set(a.status, (statuses.get(a.status) ?? 0) + 1);
    }
    expect(Object.fromEntries(statuses)).toEqual({ 429: 1470 });

    // None of it touched the victim's own budget or its registration.
    expect(await t.db.query(`SELECT hits FROM rate_limit_window WHERE key = $1`, [clientTokenBudgetKey(victim.clientId)])).toEqual([]);
    expect(await t.db.query(`SELECT secret_hash, disabled, updated_at FROM oauth_client WHERE client_id = $1`, [victim.clientId])).toEqual([before]);
    // The victim, from its own address, gets a token at once and uses it.
    const token = await victim.token();
    expect((await request(t.http).get('/fhir/Patient?_count=1').set('Authorization', `Bearer ${token}`)).status).toBe(200);
    expect(await t.db.query(`SELECT hits FROM rate_limit_window WHERE key = $1`, [clientTokenBudgetKey(victim.clientId)])).toEqual([{ hits: 1 }]);
  }, 120_000);

  it('limits failed attempts per source address across claimed ids, and then refuses even right credentials from it', async () => {
    const client = await registerTestClient(t, { role: 'hospital', scopes: ['system/Patient.rs'] });
    const address = from('127.0.0.3');
    const statuses: number[] = [];
    // 100 failures (the default RATE_LIMIT_TOKEN_FAILURES_PER_ADDRESS), each claiming another unknown id.
    for (let n = 0; n < 100; n++) {
      statuses.push((await tokenRequestFrom(address, port, { grant_type: 'client_credentials', client_id: `nobody-${n}`, client_secret: 'guess' })).status);
    }
    expect(new Set(statuses)).toEqual(new Set([401]));
    const next = await tokenRequestFrom(address, port, { grant_type: 'client_credentials', client_id: 'nobody-else', client_secret: 'guess' });
    expect(next.status).toBe(429);
    expect((next.body.issue as { code: string }[])[0].code).toBe('throttled');
    // Before anything is verified the server cannot tell the owner from a guesser at that address:
    // a guess that happened to be right must not be answered differently.
    const right = await tokenRequestFrom(address, port, { grant_type: 'client_credentials', client_id: client.clientId, client_secret: client.secret, scope: 'system/Patient.rs' });
    expect(right.status).toBe(429);
    expect(right.body).not.toHaveProperty('access_token');
    // Another address is not affected.
    const elsewhere = await tokenRequestFrom(from('127.0.0.4'), port, { grant_type: 'client_credentials', client_id: client.clientId, client_secret: client.secret, scope: 'system/Patient.rs' });
    expect(elsewhere.status).toBe(200);
  });

  it('limits failed attempts per (address, claimed id) below the per-address limit', async () => {
    const address = from('127.0.0.5');
    const claim = (id: string) => tokenRequestFrom(address, port, { grant_type: 'client_credentials', client_id: id, client_secret: 'guess' });
    const statuses: number[] = [];
    for (let n = 0; n < 21; n++) statuses.push((await claim('target-a')).status);
    expect(statuses).toEqual([...Array(20).fill(401), 429]);
    // The same address may still fail for another id (its address budget is not used up).
    expect((await claim('target-b')).status).toBe(401);
  });

  it('unknown ids, wrong secrets and secret-less clients are refused alike, and secrets are not stored as scrypt', async () => {
    const known = await registerTestClient(t, { role: 'hospital', scopes: ['system/Patient.rs'] });
    const { publicKey } = await generateKeyPair('ES384', { extractable: true });
    const keyOnly = `key-only-${Date.now()}`;
    await t.app.get(ClientRegistrationRepository).create({
      clientId: keyOnly,
      name: keyOnly,
      organization: 'org-test',
      role: 'hospital',
      scopes: ['system/Patient.rs'],
      purposes: ['TREAT'],
      jwks: { keys: [{ ...(await exportJWK(publicKey)), kid: 'k', alg: 'ES384' }] },
    });
    const address = from('127.0.0.6');
    const attempt = (id: string) => tokenRequestFrom(address, port, { grant_type: 'client_credentials', scope: 'system/Patient.rs' }, basic(id, 'wrong-secret'));
    const answers = [await attempt(known.clientId), await attempt(`unknown-${Date.now()}`), await attempt(keyOnly)];
    for (const a of answers) {
      expect(a.status).toBe(401);
      expect(a.body).toEqual({ error: 'invalid_client', error_description: 'client authentication failed' });
      expect(a.headers['www-authenticate']).toBe('Basic realm="token"');
    }
    const [{ secret_hash }] = await t.db.query(`SELECT secret_hash FROM oauth_client WHERE client_id = $1`, [known.clientId]);
    expect(secret_hash).toMatch(/^hmac-sha256\$[A-Za-z0-9_-]{43}$/);
    expect(secret_hash).not.toContain(known.secret);
  });

  it('a wrong secret for a known id costs about what an unknown id costs (no scrypt per guess)', async () => {
    const known = await registerTestClient(t, { role: 'hospital', scopes: ['system/Patient.rs'] });
    const address = from('127.0.0.7');
    const timed = async (id: string) => {
      const started = performance.now();
      const a = await tokenRequestFrom(address, port, { grant_type: 'client_credentials', client_id: id, client_secret: 'wrong', scope: 'system/Patient.rs' });
      expect(a.status).toBe(401);
      return performance.now() - started;
    };
    const knownMs: number[] = [];
    const unknownMs: number[] = [];
    // Interleaved, so load on the machine hits both alike; 15 each stays below the per-id limit.
    for (let n = 0; n < 15; n++) {
      knownMs.push(await timed(known.clientId));
      unknownMs.push(await timed(`unknown-timing-${n}`));
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    // An scrypt per guess made known ids 10-50x slower than unknown ones; allow generous noise.
    expect(median(knownMs)).toBeLessThan(3 * median(unknownMs) + 10);
  });

  it('a secret stored in the old scrypt format is no longer accepted (rotate it)', async () => {
    const clientId = `legacy-${Date.now()}`;
    const secret = randomBytes(32).toString('base64url');
    const salt = randomBytes(16);
    const legacy = `scrypt$${salt.toString('base64url')}$${scryptSync(secret, salt, 32).toString('base64url')}`;
    await t.db.query(
      `INSERT INTO oauth_client (client_id, name, organization, role, scopes, purposes, secret_hash)
       VALUES ($1, $1, 'org-test', 'hospital', '{system/Patient.rs}', '{TREAT}', $2)`,
      [clientId, legacy],
    );
    const refused = await tokenRequestFrom(from('127.0.0.8'), port, { grant_type: 'client_credentials', scope: 'system/Patient.rs' }, basic(clientId, secret));
    expect(refused.status).toBe(401);
    expect(refused.body).toEqual({ error: 'invalid_client', error_description: 'client authentication failed' });
    const rotated = await t.app.get(ClientRegistrationRepository).rotateSecret(clientId);
    const ok = await tokenRequestFrom(from('127.0.0.8'), port, { grant_type: 'client_credentials', scope: 'system/Patient.rs' }, basic(clientId, rotated!));
    expect(ok.status).toBe(200);
  });
});

describe('a verified client’s own token budget', () => {
  let t: TestApp;
  let port: number;
  let agent: http.Agent;
  const previous = process.env.RATE_LIMIT_PER_MINUTE;
  beforeAll(async () => {
    process.env.RATE_LIMIT_PER_MINUTE = '3';
    t = await createTestApp();
    await t.app.listen(0, '127.0.0.1');
    port = (t.http.address() as AddressInfo).port;
    agent = new http.Agent({ keepAlive: true, maxSockets: 1, localAddress: '127.0.0.9' });
    await t.db.query('TRUNCATE rate_limit_window');
    const pinned = new Date(Date.UTC(2026, 0, 5, 11, 0, 30));
    (t.app.get(ThrottlerStorage) as PostgresThrottlerStorage).clock = () => pinned;
  });
  afterAll(async () => {
    if (previous === undefined) delete process.env.RATE_LIMIT_PER_MINUTE;
    else process.env.RATE_LIMIT_PER_MINUTE = previous;
    agent.destroy();
    await t.db.query('TRUNCATE rate_limit_window');
    await t.close();
  });

  it('is spent only by requests that authenticated as the client, and then limits it', async () => {
    // createTestApp's own hospital client got its token before the counters were cleared.
    const c = await registerTestClient(t, { role: 'hospital', scopes: ['system/Patient.rs'] });
    // Five failures claiming its id (from elsewhere) spend nothing of its budget of 3.
    for (let n = 0; n < 5; n++) {
      expect((await tokenRequestFrom(agent, port, { grant_type: 'client_credentials', scope: 'system/Patient.rs' }, basic(c.clientId, 'wrong'))).status).toBe(401);
    }
    const own = () => request(t.http).post('/oauth2/token').auth(c.clientId, c.secret).type('form').send({ grant_type: 'client_credentials', scope: 'system/Patient.rs' });
    const statuses = [];
    for (let n = 0; n < 4; n++) statuses.push((await own()).status);
    expect(statuses).toEqual([200, 200, 200, 429]);
    const limited = await own();
    expect(limited.body.issue[0]).toMatchObject({ code: 'throttled', diagnostics: 'Too many token requests for this client; retry later' });
    expect(limited.headers['retry-after']).toMatch(/^\d+$/);
  });
});

describe('TRUST_PROXY', () => {
  let t: TestApp;
  const previous = process.env.TRUST_PROXY;
  beforeAll(async () => {
    process.env.TRUST_PROXY = 'loopback';
    t = await createTestApp();
    await t.db.query('TRUNCATE rate_limit_window');
    const pinned = new Date(Date.UTC(2026, 0, 5, 12, 0, 30));
    (t.app.get(ThrottlerStorage) as PostgresThrottlerStorage).clock = () => pinned;
  });
  afterAll(async () => {
    if (previous === undefined) delete process.env.TRUST_PROXY;
    else process.env.TRUST_PROXY = previous;
    await t.db.query('TRUNCATE rate_limit_window');
    await t.close();
  });

  it('counts failed token requests per client address behind a trusted proxy, not per proxy', async () => {
    const via = (address: string, id: string) =>
      request(t.http).post('/oauth2/token').set('X-Forwarded-For', address).type('form').send({ grant_type: 'client_credentials', client_id: id, client_secret: 'guess' });
    const statuses = [];
    for (let n = 0; n < 21; n++) statuses.push((await via('203.0.113.7', 'proxied-target')).status);
    expect(statuses).toEqual([...Array(20).fill(401), 429]);
    // Another client behind the same proxy is a different address.
    expect((await via('203.0.113.8', 'proxied-target')).status).toBe(401);
  });
});

describe('access tokens need exp, iat, iss and aud (issue 9, item 11)', () => {
  let t: TestApp;
  let hospital: TestClient;
  beforeAll(async () => {
    t = await createTestApp();
    hospital = await registerTestClient(t, { role: 'hospital', scopes: ['system/Patient.rs'] });
  });
  afterAll(() => t.close());

  it('refuses a token signed with the server’s own key that lacks any of them', async () => {
    // The key the server signs with, read through the store the server uses.
    const { kid, key } = await t.app.get(SigningKeyStore).signingKey();
    const now = Math.floor(Date.now() / 1000);
    const sign = (omit: 'exp' | 'iat' | 'iss' | 'aud' | 'none') => {
      const jwt = new SignJWT({ client_id: hospital.clientId, org: 'org-test', role: 'hospital', scope: 'system/Patient.rs', pou: 'TREAT' })
        .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid })
        .setSubject(hospital.clientId)
        .setJti(`jti-${omit}`);
      if (omit !== 'iss') jwt.setIssuer('http://localhost:8080');
      if (omit !== 'aud') jwt.setAudience('http://localhost:8080/fhir');
      if (omit !== 'iat') jwt.setIssuedAt(now);
      if (omit !== 'exp') jwt.setExpirationTime(now + 120);
      return jwt.sign(key);
    };
    const read = async (token: string) => request(t.http).get('/fhir/Patient?_count=1').set('Authorization', `Bearer ${token}`);
    expect((await read(await sign('none'))).status).toBe(200);
    for (const omit of ['exp', 'iat', 'iss', 'aud'] as const) {
      const res = await read(await sign(omit));
      expect([omit, res.status]).toEqual([omit, 401]);
      expect(res.body).toMatchObject({ resourceType: 'OperationOutcome', issue: [{ code: 'login' }] });
      expect(res.headers['www-authenticate']).toBe('Bearer');
      expect(res.body).not.toHaveProperty('entry');
    }
    // A lifetime longer than any the server issues (ACCESS_TOKEN_TTL_SECONDS is at most 3600).
    const forever = await new SignJWT({ client_id: hospital.clientId, org: 'org-test', role: 'hospital', scope: 'system/Patient.rs', pou: 'TREAT' })
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid })
      .setIssuer('http://localhost:8080')
      .setAudience('http://localhost:8080/fhir')
      .setSubject(hospital.clientId)
      .setIssuedAt(now)
      .setExpirationTime(now + 10 * 365 * 86400)
      .sign(key);
    expect((await read(forever)).status).toBe(401);
  });

  it('refuses a server-signed token with an unknown role claim with 401 and an OperationOutcome, not 500 (issue 22, item 15)', async () => {
    const { kid, key } = await t.app.get(SigningKeyStore).signingKey();
    const now = Math.floor(Date.now() / 1000);
    const withRole = (role: unknown) =>
      new SignJWT({ client_id: hospital.clientId, org: 'org-test', role, scope: 'system/Patient.rs', pou: 'TREAT' })
        .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid })
        .setIssuer('http://localhost:8080')
        .setAudience('http://localhost:8080/fhir')
        .setSubject(hospital.clientId)
        .setIssuedAt(now)
        .setExpirationTime(now + 120)
        .sign(key);
    for (const role of ['king', 'constructor', 7, ['hospital']]) {
      const res = await request(t.http).get('/fhir/Patient?_count=1').set('Authorization', `Bearer ${await withRole(role)}`);
      expect([role, res.status, res.headers['www-authenticate']]).toEqual([role, 401, 'Bearer']);
      expect(res.body).toMatchObject({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'login' }] });
    }
  });
});

describe('client JWKS hold public keys only (issue 9, item 12)', () => {
  let t: TestApp;
  let bearer: string;
  beforeAll(async () => {
    t = await createTestApp();
    const admin = await registerTestClient(t, { role: 'admin', scopes: ['system/Organization.cruds'], purposes: ['HSYSADMIN'] });
    bearer = `Bearer ${await admin.token()}`;
    const org = await request(t.http)
      .put('/fhir/Organization/org-jwks')
      .set('Authorization', bearer)
      .set('Content-Type', 'application/fhir+json')
      .send({ resourceType: 'Organization', id: 'org-jwks', name: 'JWKS test hospital' });
    expect(org.status).toBeLessThan(300);
  });
  afterAll(() => t.close());

  const register = (clientId: string, jwks: unknown) =>
    request(t.http)
      .post('/admin/clients')
      .set('Authorization', bearer)
      .send({ clientId, organization: 'org-jwks', role: 'hospital', scopes: ['system/Patient.rs'], purposes: ['TREAT'], jwks });

  it('refuses a key with private members or a symmetric key (400 naming the key), storing nothing', async () => {
    const { privateKey } = await generateKeyPair('ES384', { extractable: true });
    const privateJwk = { ...(await exportJWK(privateKey)), kid: 'k1', alg: 'ES384' };
    const rsa = await generateKeyPair('RS384', { extractable: true });
    const rsaPrivate = { ...(await exportJWK(rsa.privateKey)), kid: 'r1', alg: 'RS384' };
    const { d: _d, ...ecPublic } = privateJwk;
    const cases: [unknown, string, string][] = [
      [{ keys: [privateJwk] }, 'jwks.keys[0]', 'jwks.keys[0]: is a private key (member "d"); register only the public key'],
      [{ keys: [ecPublic, rsaPrivate] }, 'jwks.keys[1]', 'jwks.keys[1]: is a private key (member "d"); register only the public key'],
      [{ keys: [{ kty: 'oct', k: 'c2VjcmV0LXNoYXJlZC1rZXk', alg: 'HS256' }] }, 'jwks.keys[0]', 'jwks.keys[0]: is a symmetric (kty oct) key; register only the public key'],
      [{ keys: [{ kty: 'oct', alg: 'HS256' }] }, 'jwks.keys[0]', 'jwks.keys[0]: is a symmetric (kty oct) key; register only the public key'],
      [{ keys: [{ kty: 'OKP', crv: 'Ed25519', x: 'abc' }] }, 'jwks.keys[0].kty', 'jwks.keys[0].kty: must be RSA or EC'],
    ];
    const before = await t.app.get(ClientRegistrationRepository).count();
    for (const [n, [jwks, path, diagnostics]] of cases.entries()) {
      const clientId = `jwks-private-${n}-${Date.now()}`;
      const res = await register(clientId, jwks);
      expect(res.status).toBe(400);
      expect(res.body).toEqual({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'invalid', diagnostics, expression: [path] }] });
      // Nothing of the key is echoed, and nothing was stored.
      expect(res.text).not.toContain(privateJwk.d);
      expect(res.text).not.toContain(rsaPrivate.d);
      expect((await request(t.http).get(`/admin/clients/${clientId}`).set('Authorization', bearer)).status).toBe(404);
    }
    expect(await t.app.get(ClientRegistrationRepository).count()).toBe(before);
    expect(JSON.stringify(await t.db.query(`SELECT jwks FROM oauth_client WHERE jwks IS NOT NULL`))).not.toContain(privateJwk.d);
  });

  it('the CLI refuses them too', async () => {
    const { privateKey } = await generateKeyPair('ES384', { extractable: true });
    const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(privateKey)), kid: 'k1' }] });
    const id = `jwks-cli-${Date.now()}`;
    await expect(
      runCli(['client', 'add', '--id', id, '--role', 'hospital', '--org', 'org-jwks', '--scopes', 'system/Patient.rs', '--purposes', 'TREAT', '--jwks', jwks], { out: () => undefined, err: () => undefined }),
    ).rejects.toThrow('jwks.keys[0]: is a private key (member "d"); register only the public key');
    expect(await t.app.get(ClientRegistrationRepository).find(id)).toBeUndefined();
  });

  it('stores and echoes only the public members of a public key', async () => {
    const { publicKey } = await generateKeyPair('ES384', { extractable: true });
    const pub = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES384', use: 'sig' };
    const clientId = `jwks-public-${Date.now()}`;
    const res = await register(clientId, { keys: [{ ...pub, x5u: 'http://attacker.example/certs', ext: true, note: 'free text' }], extra: 'ignored' });
    expect(res.status).toBe(201);
    expect(res.body.jwks).toEqual({ keys: [pub] });
    expect((await request(t.http).get(`/admin/clients/${clientId}`).set('Authorization', bearer)).body.jwks).toEqual({ keys: [pub] });
    expect(await t.db.query(`SELECT jwks FROM oauth_client WHERE client_id = $1`, [clientId])).toEqual([{ jwks: { keys: [pub] } }]);
  });

  it('migration 801 strips private members and symmetric keys stored before', async () => {
    const { privateKey } = await generateKeyPair('ES384', { extractable: true });
    const full = { ...(await exportJWK(privateKey)), kid: 'k1', alg: 'ES384' };
    const { d: _d, ...pub } = full;
    const clientId = `jwks-legacy-${Date.now()}`;
    await t.db.query(
      `INSERT INTO oauth_client (client_id, name, organization, role, scopes, purposes, jwks)
       VALUES ($1, $1, 'org-jwks', 'hospital', '{system/Patient.rs}', '{TREAT}', $2)`,
      [clientId, JSON.stringify({ keys: [full, { kty: 'oct', k: 'c2VjcmV0' }] })],
    );
    const runner = t.db.createQueryRunner();
    try {
      await new ClientJwksPublicOnly1732400000801().up(runner);
    } finally {
      await runner.release();
    }
    expect(await t.db.query(`SELECT jwks FROM oauth_client WHERE client_id = $1`, [clientId])).toEqual([{ jwks: { keys: [pub] } }]);
  });
});
