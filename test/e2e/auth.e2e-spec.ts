import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import request from 'supertest';
import { registerTestClient, TestClient } from '../support/auth';
import { FHIR_JSON, hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

const TOKEN_URL = 'http://localhost:8080/oauth2/token';
const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

describe('authentication and authorization (SMART Backend Services, HIE roles)', () => {
  let t: TestApp;
  let patientId: string;
  let conditionId: string;
  let hospital: TestClient;

  beforeAll(async () => {
    t = await createTestApp();
    hospital = await registerTestClient(t, { role: 'hospital', organization: 'org-auth' });
    patientId = (await t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(hiePatient())).body.id;
    conditionId = (
      await t.api
        .post('/fhir/Condition')
        .set('Content-Type', FHIR_JSON)
        .send({ resourceType: 'Condition', subject: { reference: `Patient/${patientId}` }, code: { text: 'asthma' } })
    ).body.id;
  });
  afterAll(() => t.close());

  /** Asserts a FHIR denial that reveals nothing of the resource. */
  function expectDenied(res: request.Response, status: number, code: string): void {
    expect(res.status).toBe(status);
    expect(res.body.resourceType).toBe('OperationOutcome');
    expect(res.body.issue[0].code).toBe(code);
    expect(res.text).not.toContain('Müller');
    expect(res.text).not.toContain('asthma');
  }
  const readPatient = (token?: string, headers: Record<string, string> = {}) => {
    const r = request(t.http).get(`/fhir/Patient/${patientId}`);
    if (token !== undefined) r.set('Authorization', `Bearer ${token}`);
    for (const [k, v] of Object.entries(headers)) r.set(k, v);
    return r;
  };

  async function assertionClient(alg: 'RS384' | 'ES384', role: 'hospital' = 'hospital') {
    const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
    const jwk = { ...(await exportJWK(publicKey)), kid: `${alg}-key`, alg };
    const clientId = `jwt-${alg}-${Date.now()}`;
    const { ClientRegistrationRepository } = await import('../../src/auth/client-registration.repository');
    await t.app.get(ClientRegistrationRepository).create({
      clientId,
      name: clientId,
      organization: 'org-jwt',
      role,
      scopes: ['system/Patient.rs'],
      purposes: ['TREAT'],
      jwks: { keys: [jwk] },
    });
    const assertion = ({ aud, ...claims }: Record<string, unknown> = {}, exp = '4m') =>
      new SignJWT({ jti: `${Math.random()}`, ...claims })
        .setProtectedHeader({ alg, kid: jwk.kid, typ: 'JWT' })
        .setIssuer(clientId)
        .setSubject(clientId)
        .setAudience((aud as string | undefined) ?? TOKEN_URL)
        .setExpirationTime(exp)
        .sign(privateKey);
    const exchange = (jwt: string) =>
      request(t.http)
        .post('/oauth2/token')
        .type('form')
        .send({ grant_type: 'client_credentials', scope: 'system/Patient.rs', client_assertion_type: ASSERTION_TYPE, client_assertion: jwt });
    return { clientId, assertion, exchange };
  }

  describe('token endpoint', () => {
    it('publishes SMART configuration, JWKS and CapabilityStatement security without a token', async () => {
      const smart = await request(t.http).get('/.well-known/smart-configuration');
      expect(smart.status).toBe(200);
      expect(smart.body.token_endpoint).toBe(TOKEN_URL);
      expect(smart.body.token_endpoint_auth_signing_alg_values_supported).toEqual(['RS384', 'ES384']);
      const jwks = await request(t.http).get('/.well-known/jwks.json');
      expect(jwks.body.keys.length).toBeGreaterThanOrEqual(1);
      expect(jwks.body.keys[0]).not.toHaveProperty('d');
      const cs = await request(t.http).get('/fhir/metadata');
      expect(cs.body.rest[0].security.service[0].coding[0].code).toBe('SMART-on-FHIR');
      expect(cs.body.rest[0].security.extension[0].extension[0]).toEqual({ url: 'token', valueUri: TOKEN_URL });
    });

    it.each(['RS384', 'ES384'] as const)('issues a token for a private_key_jwt assertion signed with %s', async (alg) => {
      const c = await assertionClient(alg);
      const res = await c.exchange(await c.assertion());
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ access_token: expect.any(String), token_type: 'bearer', expires_in: 300, scope: 'system/Patient.rs' });
      expect(res.headers['cache-control']).toBe('no-store');
      expect((await readPatient(res.body.access_token)).status).toBe(200);
    });

    it('accepts client_secret_basic', async () => {
      const res = await request(t.http)
        .post('/oauth2/token')
        .auth(hospital.clientId, hospital.secret)
        .type('form')
        .send({ grant_type: 'client_credentials', scope: 'system/Patient.rs' });
      expect(res.status).toBe(200);
      expect(res.body.scope).toBe('system/Patient.rs');
    });

    it('rejects a replayed assertion jti', async () => {
      const c = await assertionClient('ES384');
      const jwt = await c.assertion({ jti: 'once-only' });
      expect((await c.exchange(jwt)).status).toBe(200);
      const replay = await c.exchange(jwt);
      expect(replay.status).toBe(401);
      expect(replay.body).toEqual({ error: 'invalid_client', error_description: 'client_assertion jti was already used' });
    });

    it('rejects an assertion for the wrong audience, too far in the future, or signed by another key', async () => {
      const c = await assertionClient('RS384');
      const wrongAud = await c.exchange(await c.assertion({ aud: 'http://elsewhere/token' }));
      expect(wrongAud.status).toBe(401);
      expect(wrongAud.body.error).toBe('invalid_client');
      const tooLong = await c.exchange(await c.assertion({}, '30m'));
      expect(tooLong.body.error_description).toBe('client_assertion exp must be at most 5 minutes ahead');
      const other = await generateKeyPair('RS384');
      const forged = await new SignJWT({ jti: 'forged' })
        .setProtectedHeader({ alg: 'RS384', kid: 'RS384-key' })
        .setIssuer(c.clientId)
        .setSubject(c.clientId)
        .setAudience(TOKEN_URL)
        .setExpirationTime('4m')
        .sign(other.privateKey);
      expect((await c.exchange(forged)).body).toEqual({ error: 'invalid_client', error_description: 'client_assertion could not be verified' });
    });

    it('rejects an assertion issued more than 60 s ahead of the server clock (issue 22, item 15)', async () => {
      const c = await assertionClient('ES384');
      const now = Math.floor(Date.now() / 1000);
      const ahead = await c.exchange(await c.assertion({ iat: now + 3600 }));
      expect({ status: ahead.status, body: ahead.body }).toEqual({
        status: 401,
        body: { error: 'invalid_client', error_description: 'client_assertion iat must be at most 60 s ahead of the server clock' },
      });
      expect((await c.exchange(await c.assertion({ iat: now + 61 + 5 }))).status).toBe(401);
      // Within the tolerance access tokens use: a client clock a little fast still works.
      expect((await c.exchange(await c.assertion({ iat: now + 30 }))).status).toBe(200);
    });

    it('rejects a wrong secret, an unregistered purpose and an unregistered scope', async () => {
      const form = (extra: Record<string, string>) =>
        request(t.http)
          .post('/oauth2/token')
          .type('form')
          .send({ grant_type: 'client_credentials', client_id: hospital.clientId, client_secret: hospital.secret, scope: 'system/*.*', ...extra });
      expect((await form({ client_secret: 'wrong' })).body.error).toBe('invalid_client');
      const purpose = await form({ purpose_of_use: 'HPAYMT' });
      expect(purpose.status).toBe(400);
      expect(purpose.body.error).toBe('invalid_request');
      const narrow = await registerTestClient(t, { role: 'hospital', scopes: ['system/Patient.rs'] });
      const scope = await request(t.http)
        .post('/oauth2/token')
        .type('form')
        .send({ grant_type: 'client_credentials', client_id: narrow.clientId, client_secret: narrow.secret, scope: 'system/Observation.rs' });
      expect(scope.body.error).toBe('invalid_scope');
    });
  });

  describe('denials: status, OperationOutcome, nothing leaked', () => {
    it('no token', async () => {
      const res = await readPatient();
      expectDenied(res, 401, 'login');
      expect(res.headers['www-authenticate']).toBe('Bearer');
    });

    it('malformed token', async () => expectDenied(await readPatient('not-a-jwt'), 401, 'login'));

    it('bad signature', async () => {
      const token = await hospital.token();
      const [h, p, sig] = token.split('.');
      const flipped = sig.slice(0, -2) + (sig.endsWith('AA') ? 'BB' : 'AA');
      expectDenied(await readPatient(`${h}.${p}.${flipped}`), 401, 'login');
    });

    it('expired token, wrong audience, and a token from another server’s key', async () => {
      const { privateKey } = await generateKeyPair('ES256');
      const sign = (aud: string, exp: number | string) =>
        new SignJWT({ client_id: hospital.clientId, org: 'org-auth', role: 'hospital', scope: 'system/*.*', pou: 'TREAT' })
          .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'elsewhere' })
          .setIssuer('http://localhost:8080')
          .setAudience(aud)
          .setExpirationTime(exp)
          .sign(privateKey);
      expectDenied(await readPatient(await sign('http://localhost:8080/fhir', '5m')), 401, 'login');
      // With this server's own key: expired, and wrong audience.
      const { SigningKeyStore } = await import('../../src/auth/signing-key.store');
      const { kid, key } = await t.app.get(SigningKeyStore).signingKey();
      const own = (aud: string, exp: number) =>
        new SignJWT({ client_id: hospital.clientId, org: 'org-auth', role: 'hospital', scope: 'system/*.*', pou: 'TREAT' })
          .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid })
          .setIssuer('http://localhost:8080')
          .setSubject(hospital.clientId)
          .setAudience(aud)
          .setIssuedAt()
          .setExpirationTime(exp)
          .sign(key);
      const now = Math.floor(Date.now() / 1000);
      expect((await readPatient(await own('http://localhost:8080/fhir', now + 60))).status).toBe(200);
      expectDenied(await readPatient(await own('http://localhost:8080/fhir', now - 60)), 401, 'login');
      expectDenied(await readPatient(await own('http://other-server/fhir', now + 60)), 401, 'login');
    });

    it('scope too narrow for the type or the interaction', async () => {
      const narrow = await registerTestClient(t, { role: 'hospital', scopes: ['system/Patient.rs'] });
      const token = await narrow.token();
      expectDenied(
        await request(t.http).get(`/fhir/Condition/${conditionId}`).set('Authorization', `Bearer ${token}`),
        403,
        'forbidden',
      );
      const write = await request(t.http)
        .put(`/fhir/Patient/${patientId}`)
        .set('Authorization', `Bearer ${token}`)
        .set('Content-Type', FHIR_JSON)
        .send(hiePatient({ id: patientId, gender: 'male' }));
      expectDenied(write, 403, 'forbidden');
      expect((await t.api.get(`/fhir/Patient/${patientId}`)).body.gender).toBe('female');
    });

    it.each([
      ['auditor', 'Patient'],
      ['public-health', 'Observation'],
      ['admin', 'Condition'],
    ] as const)('role %s may not read %s', async (role, type) => {
      const client = await registerTestClient(t, { role, scopes: ['system/*.*'], purposes: [{ auditor: 'HOPERAT', 'public-health': 'PUBHLTH', admin: 'HSYSADMIN' }[role]] });
      const id = type === 'Condition' ? conditionId : type === 'Patient' ? patientId : 'any-id';
      const res = await request(t.http).get(`/fhir/${type}/${id}`).set('Authorization', `Bearer ${await client.token()}`);
      expectDenied(res, 403, 'forbidden');
      expect(res.body.issue[0].diagnostics).toBe(`The ${role} role may not read ${type}`);
    });

    it('disabled client: its tokens stop working and it cannot get new ones', async () => {
      const client = await registerTestClient(t, { role: 'hospital' });
      const token = await client.token();
      expect((await readPatient(token)).status).toBe(200);
      const { ClientRegistrationRepository } = await import('../../src/auth/client-registration.repository');
      await t.app.get(ClientRegistrationRepository).setDisabled(client.clientId, true);
      expectDenied(await readPatient(token), 401, 'login');
      await expect(client.token()).rejects.toThrow(/invalid_client/);
    });

    it('purpose of use not registered for the client', async () => {
      await expect(hospital.token('system/*.*', 'ETREAT')).rejects.toThrow(/400.*invalid_request/);
    });

    it('ETREAT (break-the-glass) without a reason is denied; with a reason it is allowed', async () => {
      const client = await registerTestClient(t, { role: 'hospital', purposes: ['TREAT', 'ETREAT'] });
      const token = await client.token('system/*.*', 'ETREAT');
      const denied = await readPatient(token);
      expectDenied(denied, 403, 'forbidden');
      expect(denied.body.issue[0].diagnostics).toMatch(/X-Break-Glass-Reason/);
      expect((await readPatient(token, { 'X-Break-Glass-Reason': 'unconscious patient in ED' })).status).toBe(200);
    });
  });

  describe('each role does its own work', () => {
    it('hospital: create, read, history, update, delete', async () => {
      const token = await hospital.token();
      const as = (r: request.Test) => r.set('Authorization', `Bearer ${token}`);
      const created = await as(request(t.http).post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(hiePatient()));
      expect(created.status).toBe(201);
      const id = created.body.id as string;
      const read = await as(request(t.http).get(`/fhir/Patient/${id}`));
      expect({ status: read.status, id: read.body.id, version: read.body.meta.versionId }).toEqual({ status: 200, id, version: '1' });
      const updated = await as(request(t.http).put(`/fhir/Patient/${id}`).set('Content-Type', FHIR_JSON).send(hiePatient({ id, gender: 'female' })));
      expect({ status: updated.status, gender: updated.body.gender, version: updated.body.meta.versionId }).toEqual({ status: 200, gender: 'female', version: '2' });
      const history = await as(request(t.http).get(`/fhir/Patient/${id}/_history`));
      expect(history.status).toBe(200);
      expect(history.body.entry.map((e: { resource: { meta: { versionId: string } } }) => e.resource.meta.versionId)).toEqual(['2', '1']);
      const del = await as(request(t.http).delete(`/fhir/Patient/${id}`));
      expect(del.status).toBe(200);
      expect((await as(request(t.http).get(`/fhir/Patient/${id}`))).status).toBe(410);
    });

    it('auditor: reads AuditEvent, nothing clinical', async () => {
      const event = await t.api
        .post('/fhir/AuditEvent')
        .set('Content-Type', FHIR_JSON)
        .send({
          resourceType: 'AuditEvent',
          type: { system: 'http://dicom.nema.org/resources/ontology/DCM', code: '110110' },
          recorded: '2026-01-01T00:00:00Z',
          agent: [{ requestor: true, who: { display: 'ehr' } }],
          source: { observer: { display: 'hospital-a' } },
        });
      expect(event.status).toBe(201);
      // Scopes that would cover clinical types: the auditor role alone must keep them out.
      const auditor = await registerTestClient(t, { role: 'auditor', scopes: ['system/*.rs'], purposes: ['HOPERAT'] });
      const token = await auditor.token();
      const read = await request(t.http).get(`/fhir/AuditEvent/${event.body.id}`).set('Authorization', `Bearer ${token}`);
      expect({ status: read.status, resourceType: read.body.resourceType, id: read.body.id }).toEqual({ status: 200, resourceType: 'AuditEvent', id: event.body.id });
      const write = await request(t.http)
        .delete(`/fhir/AuditEvent/${event.body.id}`)
        .set('Authorization', `Bearer ${token}`);
      expectDenied(write, 403, 'forbidden');
      // Nothing clinical: neither a read nor a search of a clinical type.
      for (const [path, type] of [
        [`/fhir/Patient/${patientId}`, 'Patient'],
        [`/fhir/Condition/${conditionId}`, 'Condition'],
        [`/fhir/Condition?subject=Patient/${patientId}`, 'Condition'],
      ]) {
        const clinical = await request(t.http).get(path).set('Authorization', `Bearer ${token}`);
        expectDenied(clinical, 403, 'forbidden');
        expect([path, clinical.body.issue[0].diagnostics]).toEqual([path, expect.stringMatching(new RegExp(`^The auditor role may not (read|search) ${type}$`))]);
        expect(clinical.body).not.toHaveProperty('entry');
      }
    });

    it('admin: registers clients and manages Organizations, no clinical data', async () => {
      const admin = await registerTestClient(t, { role: 'admin', scopes: ['system/Organization.cruds'], purposes: ['HSYSADMIN'] });
      const token = await admin.token();
      const org = await request(t.http)
        .post('/fhir/Organization')
        .set('Authorization', `Bearer ${token}`)
        .set('Content-Type', FHIR_JSON)
        .send({ resourceType: 'Organization', name: 'St. Example Hospital' });
      expect(org.status).toBe(201);
      const registered = await request(t.http)
        .post('/admin/clients')
        .set('Authorization', `Bearer ${token}`)
        .send({ clientId: `admin-made-${Date.now()}`, organization: org.body.id, role: 'hospital', scopes: ['system/*.rs'], purposes: ['TREAT'] });
      expect(registered.status).toBe(201);
      expect(registered.body.clientSecret).toEqual(expect.any(String));
      expect(registered.body).not.toHaveProperty('secretHash');
      const newToken = await request(t.http)
        .post('/oauth2/token')
        .type('form')
        .send({ grant_type: 'client_credentials', client_id: registered.body.clientId, client_secret: registered.body.clientSecret, scope: 'system/Patient.rs' });
      expect(newToken.status).toBe(200);
      const rotated = await request(t.http).post(`/admin/clients/${registered.body.clientId}/rotate-secret`).set('Authorization', `Bearer ${token}`);
      expect(rotated.status).toBe(200);
      expect(rotated.body.clientSecret).not.toBe(registered.body.clientSecret);
      const list = await request(t.http).get('/admin/clients').set('Authorization', `Bearer ${token}`);
      expect(list.body.map((c: { clientId: string }) => c.clientId)).toContain(registered.body.clientId);
      const bad = await request(t.http).post('/admin/clients').set('Authorization', `Bearer ${token}`).send({ organization: 'x', role: 'king', scopes: ['system/*.*'], purposes: ['TREAT'] });
      expect(bad.status).toBe(400);
      expect(bad.body.issue[0].expression).toEqual(['role']);
      const hospitalToken = await hospital.token();
      expect((await request(t.http).get('/admin/clients').set('Authorization', `Bearer ${hospitalToken}`)).status).toBe(403);
    });

    it('public-health: no individual clinical reads unless granted', async () => {
      // Not granted: refused by role, and the body tells nothing of the Condition.
      const plain = await registerTestClient(t, { role: 'public-health', purposes: ['PUBHLTH'] });
      const refused = await request(t.http).get(`/fhir/Condition/${conditionId}`).set('Authorization', `Bearer ${await plain.token()}`);
      expectDenied(refused, 403, 'forbidden');
      expect(refused.body.issue[0].diagnostics).toBe('The public-health role may not read Condition');
      // Granted: the record itself comes back.
      const granted = await registerTestClient(t, { role: 'public-health', purposes: ['PUBHLTH'], clinicalAccess: true });
      const res = await request(t.http).get(`/fhir/Condition/${conditionId}`).set('Authorization', `Bearer ${await granted.token()}`);
      expect({ status: res.status, resourceType: res.body.resourceType, id: res.body.id, code: res.body.code }).toEqual({
        status: 200,
        resourceType: 'Condition',
        id: conditionId,
        code: { text: 'asthma' },
      });
      const write = await request(t.http)
        .delete(`/fhir/Condition/${conditionId}`)
        .set('Authorization', `Bearer ${await granted.token()}`);
      expectDenied(write, 403, 'forbidden');
      expect((await t.api.get(`/fhir/Condition/${conditionId}`)).status).toBe(200);
    });
  });
});
