import { decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, SignJWT } from 'jose';
import request from 'supertest';
import { ClientRegistrationRepository } from '../../src/auth/client-registration.repository';
import { registerTestClient } from '../support/auth';
import { createTestApp, TestApp } from '../support/test-app';

const TOKEN_URL = 'http://localhost:8080/oauth2/token';

/** Env-dependent app variants: set the variables, boot, restore. */
async function withEnv(env: Record<string, string>, run: (t: TestApp) => Promise<void>): Promise<void> {
  const previous = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env);
  const t = await createTestApp();
  try {
    await run(t);
  } finally {
    await t.close();
    for (const [k, v] of Object.entries(previous)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

describe('access tokens, client assertions and HTTP hardening', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t.close());

  it('an access token carries client, organization, role, granted scopes and purpose, and lives 5 minutes', async () => {
    const c = await registerTestClient(t, { role: 'hospital', organization: 'org-claims', scopes: ['system/Patient.rs', 'system/Observation.cruds'], purposes: ['TREAT', 'ETREAT'] });
    const token = await c.token('system/Patient.rs system/Condition.rs', 'ETREAT');
    const claims = decodeJwt(token);
    expect(claims).toMatchObject({
      iss: 'http://localhost:8080',
      aud: 'http://localhost:8080/fhir',
      sub: c.clientId,
      client_id: c.clientId,
      org: 'org-claims',
      role: 'hospital',
      scope: 'system/Patient.rs',
      pou: 'ETREAT',
    });
    expect(claims.exp! - claims.iat!).toBe(300);
    expect(claims.jti).toEqual(expect.any(String));
    const header = decodeProtectedHeader(token);
    expect(header).toMatchObject({ alg: 'ES256', typ: 'at+jwt' });
    const jwks = (await request(t.http).get('/.well-known/jwks.json')).body.keys;
    expect(jwks.map((k: { kid: string }) => k.kid)).toContain(header.kid);
  });

  it('a token request without grant_type is invalid_request (RFC 6749 5.2), an unknown grant unsupported_grant_type', async () => {
    const c = await registerTestClient(t, { role: 'hospital', organization: 'org-grant', scopes: ['system/Patient.rs'], purposes: ['TREAT'] });
    const missing = await request(t.http).post('/oauth2/token').auth(c.clientId, c.secret).type('form').send({ scope: 'system/Patient.rs' });
    expect(missing.status).toBe(400);
    expect(missing.body).toEqual({ error: 'invalid_request', error_description: 'grant_type is required' });
    const empty = await request(t.http).post('/oauth2/token').auth(c.clientId, c.secret).type('form').send({ grant_type: '', scope: 'system/Patient.rs' });
    expect(empty.status).toBe(400);
    expect(empty.body).toEqual({ error: 'invalid_request', error_description: 'grant_type is required' });
    const unknown = await request(t.http).post('/oauth2/token').auth(c.clientId, c.secret).type('form').send({ grant_type: 'password', scope: 'system/Patient.rs' });
    expect(unknown.status).toBe(400);
    expect(unknown.body).toEqual({ error: 'unsupported_grant_type', error_description: 'grant_type must be client_credentials' });
  });

  it('rejects a client assertion whose sub is not its iss, or without jti', async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES384', { extractable: true });
    const clientId = `jwt-sub-${Date.now()}`;
    await t.app.get(ClientRegistrationRepository).create({
      clientId,
      name: clientId,
      organization: 'org-jwt',
      role: 'hospital',
      scopes: ['system/Patient.rs'],
      purposes: ['TREAT'],
      jwks: { keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES384' }] },
    });
    const exchange = (jwt: string) =>
      request(t.http).post('/oauth2/token').type('form').send({
        grant_type: 'client_credentials',
        scope: 'system/Patient.rs',
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: jwt,
      });
    const sign = (sub: string, jti?: string) => {
      const jwt = new SignJWT(jti ? { jti } : {}).setProtectedHeader({ alg: 'ES384', kid: 'k1' }).setIssuer(clientId).setSubject(sub).setAudience(TOKEN_URL).setExpirationTime('2m');
      return jwt.sign(privateKey);
    };
    const wrongSub = await exchange(await sign('someone-else', 'j1'));
    expect(wrongSub.status).toBe(401);
    expect(wrongSub.body).toEqual({ error: 'invalid_client', error_description: 'client_assertion could not be verified' });
    expect((await exchange(await sign(clientId))).status).toBe(401);
    expect((await exchange(await sign(clientId, 'j2'))).status).toBe(200);
  });

  it('registration over the admin API needs an existing Organization resource', async () => {
    const admin = await registerTestClient(t, { role: 'admin', scopes: ['system/Organization.cruds'], purposes: ['HSYSADMIN'] });
    const bearer = `Bearer ${await admin.token()}`;
    const register = () =>
      request(t.http)
        .post('/admin/clients')
        .set('Authorization', bearer)
        .send({ clientId: `org-check-${Date.now()}`, organization: 'org-not-yet', role: 'hospital', scopes: ['system/*.rs'], purposes: ['TREAT'] });
    const before = await t.app.get(ClientRegistrationRepository).count();
    const missing = await register();
    expect(missing.status).toBe(422);
    expect(missing.body.issue[0]).toMatchObject({ code: 'not-found', expression: ['organization'] });
    expect(await t.app.get(ClientRegistrationRepository).count()).toBe(before);
    const org = await request(t.http)
      .put('/fhir/Organization/org-not-yet')
      .set('Authorization', bearer)
      .set('Content-Type', 'application/fhir+json')
      .send({ resourceType: 'Organization', id: 'org-not-yet', name: 'Hospital B' });
    expect(org.status).toBe(201);
    expect((await register()).status).toBe(201);
  });

  it('auditor searches AuditEvents', async () => {
    const auditor = await registerTestClient(t, { role: 'auditor', scopes: ['system/AuditEvent.rs'], purposes: ['HOPERAT'] });
    const res = await request(t.http).get('/fhir/AuditEvent?_count=5').set('Authorization', `Bearer ${await auditor.token()}`);
    expect(res.status).toBe(200);
    expect(res.body.type).toBe('searchset');
  });

  it('helmet headers on every kind of response; CORS off by default', async () => {
    for (const res of [
      await request(t.http).get('/fhir/metadata'),
      await request(t.http).get('/fhir/Patient/x'),
      await request(t.http).get('/nowhere'),
      await request(t.http).post('/oauth2/token').type('form').send({ grant_type: 'password' }),
      await request(t.http).get('/healthz'),
    ]) {
      expect(res.headers['x-content-type-options']).toBe('nosniff');
      expect(res.headers['strict-transport-security']).toMatch(/max-age=/);
      expect(res.headers['x-frame-options']).toBe('SAMEORIGIN');
      expect(res.headers).not.toHaveProperty('x-powered-by');
    }
    const cross = await request(t.http).get('/fhir/metadata').set('Origin', 'https://app.example');
    expect(cross.headers).not.toHaveProperty('access-control-allow-origin');
  });

  it('CORS_ORIGINS turns CORS on for the listed origins only', async () => {
    await withEnv({ CORS_ORIGINS: 'https://app.example' }, async (c) => {
      const preflight = await request(c.http)
        .options('/fhir/Patient')
        .set('Origin', 'https://app.example')
        .set('Access-Control-Request-Method', 'GET')
        .set('Access-Control-Request-Headers', 'authorization');
      expect(preflight.status).toBe(204);
      expect(preflight.headers['access-control-allow-origin']).toBe('https://app.example');
      const other = await request(c.http).get('/fhir/metadata').set('Origin', 'https://evil.example');
      expect(other.headers).not.toHaveProperty('access-control-allow-origin');
      expect((await request(c.http).get('/fhir/metadata')).body.rest[0].security.cors).toBe(true);
    });
  });

  it('HIE_SIGNING_KEY: tokens are signed with the given key, which the JWKS publishes', async () => {
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    const jwk = { ...(await exportJWK(privateKey)), kid: 'operator-key' };
    await withEnv({ HIE_SIGNING_KEY: JSON.stringify(jwk) }, async (c) => {
      const client = await registerTestClient(c, { role: 'hospital' });
      const token = await client.token();
      expect(decodeProtectedHeader(token).kid).toBe('operator-key');
      const keys = (await request(c.http).get('/.well-known/jwks.json')).body.keys;
      expect(keys).toEqual([expect.objectContaining({ kid: 'operator-key', kty: 'EC', alg: 'ES256', use: 'sig' })]);
      expect(keys[0]).not.toHaveProperty('d');
      expect((await request(c.http).get('/fhir/Patient?_count=1').set('Authorization', `Bearer ${token}`)).status).toBe(200);
    });
  });
});
