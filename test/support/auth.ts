import request from 'supertest';
import type { HieRole } from '../../src/fhir/pipeline/principal';
import { ClientRegistrationRepository } from '../../src/auth/client-registration.repository';
import { FHIR_JSON } from './fixtures';
import type { TestApp } from './test-app';

export interface TestClient {
  clientId: string;
  secret: string;
  /** A fresh access token from the real token endpoint (client_secret_post); `onBehalfOf`: the token request's on_behalf_of. */
  token(scope?: string, purpose?: string, onBehalfOf?: string): Promise<string>;
}

let sequence = 0;

const DEFAULT_PURPOSE: Record<HieRole, string> = { hospital: 'TREAT', 'public-health': 'PUBHLTH', auditor: 'HOPERAT', admin: 'HSYSADMIN' };

/** Registers a client directly in the registry (as the CLI would) and gets tokens over HTTP. */
export async function registerTestClient(
  t: TestApp,
  opts: { role: HieRole; organization?: string; scopes?: string[]; purposes?: string[]; clinicalAccess?: boolean; clientId?: string } = {
    role: 'hospital',
  },
): Promise<TestClient> {
  const clients = t.app.get(ClientRegistrationRepository);
  const clientId = opts.clientId ?? `test-${opts.role}-${process.pid}-${Date.now().toString(36)}-${sequence++}`;
  const scopes = opts.scopes ?? ['system/*.*'];
  // Each role's usual purpose: a role may hold only its own purposes (src/auth/purpose-of-use.ts).
  const purposes = opts.purposes ?? [DEFAULT_PURPOSE[opts.role]];
  const { secret } = await clients.create({
    clientId,
    name: clientId,
    organization: opts.organization ?? 'org-test',
    role: opts.role,
    scopes,
    purposes,
    clinicalAccess: opts.clinicalAccess,
    withSecret: true,
  });
  return {
    clientId,
    secret: secret!,
    async token(scope = scopes.join(' '), purpose = purposes[0], onBehalfOf?: string) {
      const res = await request(t.http)
        .post('/oauth2/token')
        .type('form')
        .send({ grant_type: 'client_credentials', client_id: clientId, client_secret: secret, scope, purpose_of_use: purpose, ...(onBehalfOf ? { on_behalf_of: onBehalfOf } : {}) });
      if (res.status !== 200) throw new Error(`token request failed: ${res.status} ${JSON.stringify(res.body)}`);
      return res.body.access_token as string;
    },
  };
}

/** A supertest agent that sends a hospital client's bearer token on every request. */
export async function hospitalAgent(t: TestApp, organization = 'org-test'): Promise<ReturnType<typeof request.agent>> {
  const client = await registerTestClient(t, { role: 'hospital', organization });
  const agent = request.agent(t.http);
  agent.set('Authorization', `Bearer ${await client.token()}`);
  return agent;
}

/** A request as one organization's hospital client (TREAT, system/*.cruds), FHIR JSON body. */
export type HospitalSend = (m: 'get' | 'post' | 'put' | 'patch' | 'delete', path: string) => request.Test;

/** A hospital client of `organization` (TREAT, system/*.cruds) registered with one token, sending FHIR JSON. */
export async function hospitalSender(t: TestApp, organization: string): Promise<HospitalSend> {
  const token = await (await registerTestClient(t, { role: 'hospital', organization })).token('system/*.cruds', 'TREAT');
  return (m, path) => request(t.http)[m](path).set('Authorization', `Bearer ${token}`).set('Content-Type', FHIR_JSON);
}
