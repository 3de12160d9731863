import { decodeJwt, SignJWT } from 'jose';
import request from 'supertest';
import { ClientRegistrationRepository } from '../../src/auth/client-registration.repository';
import { runCli } from '../../src/cli/cli';
import { SigningKeyStore } from '../../src/auth/signing-key.store';
import type { HieRole } from '../../src/fhir/pipeline/principal';
import { registerTestClient } from '../support/auth';
import { FHIR_JSON, hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';
import { consentResource } from '../support/consent';

const RUN = Date.now().toString(36);
const ROLES: HieRole[] = ['hospital', 'public-health', 'auditor', 'admin'];
const PURPOSES = ['TREAT', 'ETREAT', 'HPAYMT', 'HOPERAT', 'PUBHLTH', 'HRESCH', 'PATRQT', 'HSYSADMIN', 'HACCRED', 'HTEST'];
/**
 * The decision of docs/security.md (Purposes of use by role), written out here rather than
 * imported, so a change to src/auth/purpose-of-use.ts shows as a failing pair.
 */
const ALLOWED: Record<HieRole, string[]> = {
  hospital: ['TREAT', 'ETREAT', 'HPAYMT', 'HOPERAT', 'HRESCH', 'PATRQT', 'HTEST'],
  'public-health': ['PUBHLTH', 'HRESCH', 'HTEST'],
  auditor: ['HOPERAT', 'HACCRED', 'HTEST'],
  admin: ['HSYSADMIN', 'HTEST'],
};
const PAIRS = ROLES.flatMap((role) => PURPOSES.map((purpose) => [role, purpose, ALLOWED[role].includes(purpose)] as const));

/** Issue 22, item 6: break-the-glass and treatment were open to every role. */
describe('purposes of use by role (issue 22, item 6)', () => {
  let t: TestApp;
  let adminToken: string;
  let organization: string;

  beforeAll(async () => {
    t = await createTestApp();
    adminToken = await (await registerTestClient(t, { role: 'admin', scopes: ['system/Organization.cruds'] })).token();
    // Registration needs the client's Organization to exist.
    const org = await request(t.http)
      .post('/fhir/Organization')
      .set('Authorization', `Bearer ${adminToken}`)
      .set('Content-Type', FHIR_JSON)
      .send({ resourceType: 'Organization', name: 'Purpose of use test organization' });
    organization = org.body.id;
  });
  afterAll(() => t.close());

  it('covers every role and purpose: 40 pairs, 15 allowed', () => {
    expect([PAIRS.length, PAIRS.filter(([, , ok]) => ok).length]).toEqual([40, 15]);
  });

  it.each(PAIRS)('admin API: registering %s for %s is allowed: %s', async (role, purpose, allowed) => {
    const clientId = `pou-api-${role}-${purpose}-${RUN}`;
    const res = await request(t.http)
      .post('/admin/clients')
      .set('Authorization', `Bearer ${adminToken}`)
      .send({ clientId, organization, role, scopes: ['system/Patient.rs'], purposes: [purpose] });
    const stored = await t.db.query(`SELECT purposes FROM oauth_client WHERE client_id = $1`, [clientId]);
    if (allowed) {
      expect([res.status, stored]).toEqual([201, [{ purposes: [purpose] }]]);
    } else {
      expect(res.status).toBe(400);
      expect(res.body.issue).toEqual([
        {
          severity: 'error',
          code: 'invalid',
          diagnostics: `purposes: '${purpose}' is not allowed for the ${role} role (${ALLOWED[role].join(', ')})`,
          expression: ['purposes'],
        },
      ]);
      expect(stored).toEqual([]);
    }
  });

  it.each(PAIRS)('token endpoint: a %s client registered earlier for %s gets a token for it: %s', async (role, purpose, allowed) => {
    // Registered straight into the registry, as a registration made before the rule is stored.
    const clientId = `pou-tok-${role}-${purpose}-${RUN}`;
    const { secret } = await t.app.get(ClientRegistrationRepository).create({
      clientId,
      name: clientId,
      organization: 'org-pou',
      role,
      scopes: ['system/Patient.rs'],
      purposes: [purpose],
      withSecret: true,
    });
    const res = await request(t.http)
      .post('/oauth2/token')
      .type('form')
      .send({ grant_type: 'client_credentials', client_id: clientId, client_secret: secret, scope: 'system/Patient.rs', purpose_of_use: purpose });
    if (allowed) {
      expect(res.status).toBe(200);
      expect(decodeJwt(res.body.access_token)).toMatchObject({ role, pou: purpose });
    } else {
      expect({ status: res.status, body: res.body }).toEqual({
        status: 400,
        body: { error: 'invalid_request', error_description: `purpose_of_use '${purpose}' is not allowed for the ${role} role` },
      });
    }
  });

  it('CLI: client add refuses ETREAT for a public-health client, naming the field, and stores nothing', async () => {
    const clientId = `pou-cli-${RUN}`;
    const args = ['client', 'add', '--id', clientId, '--role', 'public-health', '--org', 'org-pou', '--scopes', 'system/*.rs', '--purposes', 'PUBHLTH ETREAT'];
    await expect(runCli(args, { out: () => undefined, err: () => undefined })).rejects.toThrow(
      "purposes: 'ETREAT' is not allowed for the public-health role (PUBHLTH, HRESCH, HTEST)",
    );
    expect(await t.db.query(`SELECT 1 FROM oauth_client WHERE client_id = $1`, [clientId])).toEqual([]);
  });

  it('a server-signed public-health ETREAT token (issued before the rule) reads nothing a patient denied: 401', async () => {
    const patientId = (await t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(hiePatient())).body.id as string;
    const consent = await t.api
      .post('/fhir/Consent')
      .set('Content-Type', FHIR_JSON)
      .send(consentResource(patientId));
    expect(consent.status).toBe(201);
    const agency = await registerTestClient(t, { role: 'public-health', organization: 'org-agency', scopes: ['system/Patient.rs'], clinicalAccess: true });
    const { kid, key } = await t.app.get(SigningKeyStore).signingKey();
    const now = Math.floor(Date.now() / 1000);
    const tokenFor = (role: string, org: string, clientId: string, pou: string) =>
      new SignJWT({ client_id: clientId, org, role, scope: 'system/Patient.rs', pou })
        .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid })
        .setIssuer('http://localhost:8080')
        .setAudience('http://localhost:8080/fhir')
        .setSubject(clientId)
        .setIssuedAt(now)
        .setExpirationTime(now + 120)
        .sign(key);
    const read = async (token: string) =>
      request(t.http).get(`/fhir/Patient/${patientId}`).set('Authorization', `Bearer ${token}`).set('X-Break-Glass-Reason', 'any reason at all');

    const glass = await read(await tokenFor('public-health', 'org-agency', agency.clientId, 'ETREAT'));
    expect({ status: glass.status, code: glass.body.issue?.[0]?.code, id: glass.body.id }).toEqual({ status: 401, code: 'login', id: undefined });
    // The agency's own purpose reads nothing the patient denied either (404, like a missing record).
    expect((await read(await tokenFor('public-health', 'org-agency', agency.clientId, 'PUBHLTH'))).status).toBe(404);
    // A treating organization's break-the-glass still opens it, as docs/consent.md says.
    const hospital = await registerTestClient(t, { role: 'hospital', organization: 'org-er', scopes: ['system/Patient.rs'], purposes: ['TREAT', 'ETREAT'] });
    const er = await read(await hospital.token('system/Patient.rs', 'ETREAT'));
    expect({ status: er.status, id: er.body.id }).toEqual({ status: 200, id: patientId });
  });
});
