import type { JSONWebKeySet } from 'jose';
import { AUDIT_EVENT_SEARCH_PARAMETERS, auditScopeRestriction } from '../audit/audit-event.search';
import { FhirError } from '../common/fhir-error';
import type { HieRole } from '../fhir/pipeline/principal';
import { ROLES } from './client-registration.repository';
import { PURPOSES_BY_ROLE, PURPOSES_OF_USE } from './purpose-of-use';
import { restrictionClauses } from './scope-restriction';
import { parseSmartScope } from './smart-scope';

/** Shared by the admin API and the CLI: a registration request, checked field by field. */
export function validateRegistration(body: Record<string, unknown>) {
  const fail = (field: string, why: string) => FhirError.badRequest(`${field}: ${why}`, [field]);
  const strings = (field: string): string[] => {
    const v = body[field];
    if (!Array.isArray(v) || !v.length || !v.every((s) => typeof s === 'string')) throw fail(field, 'must be a non-empty array of strings');
    return v as string[];
  };
  const clientId = body.clientId;
  if (clientId !== undefined && (typeof clientId !== 'string' || !/^[A-Za-z0-9\-_.]{3,64}$/.test(clientId))) {
    throw fail('clientId', 'must be 3-64 characters of [A-Za-z0-9-_.]');
  }
  const organization = body.organization;
  if (typeof organization !== 'string' || !/^[A-Za-z0-9\-.]{1,64}$/.test(organization)) throw fail('organization', 'must be an Organization id');
  const role = body.role;
  if (typeof role !== 'string' || !ROLES.includes(role as HieRole)) throw fail('role', `must be one of ${ROLES.join(', ')}`);
  const scopes = strings('scopes');
  for (const raw of scopes) {
    const scope = parseSmartScope(raw);
    if (!scope) throw fail('scopes', `'${raw.slice(0, 60)}' is not a SMART system scope`);
    // A scope query must be a search the server can run: checked now, not at the first request.
    if (scope.restrictions.length) restrictionClauses(scope);
    // AuditEvent scope queries are answered by the audit trail's own parameters.
    if (scope.restrictions.length && scope.resourceType === 'AuditEvent') {
      const unknown = scope.restrictions.find(([name]) => !AUDIT_EVENT_SEARCH_PARAMETERS.includes(name));
      if (unknown) throw fail('scopes', `'${raw.slice(0, 60)}': AuditEvent scopes may be restricted by ${AUDIT_EVENT_SEARCH_PARAMETERS.join(', ')} only`);
      auditScopeRestriction(scope);
    }
  }
  const purposes = strings('purposes');
  const badPurpose = purposes.find((p) => !PURPOSES_OF_USE.includes(p));
  if (badPurpose) throw fail('purposes', `'${badPurpose.slice(0, 20)}' is not a supported PurposeOfUse (${PURPOSES_OF_USE.join(', ')})`);
  const allowed = PURPOSES_BY_ROLE[role as HieRole];
  const forbidden = purposes.find((p) => !allowed.includes(p));
  if (forbidden) throw fail('purposes', `'${forbidden}' is not allowed for the ${role} role (${allowed.join(', ')})`);
  const jwks = body.jwks === undefined ? undefined : publicClientJwks(body.jwks);
  const withSecret = body.secret === true || jwks === undefined;
  return {
    clientId: clientId as string | undefined,
    name: typeof body.name === 'string' ? body.name.slice(0, 200) : ((clientId as string | undefined) ?? 'client'),
    organization,
    role: role as HieRole,
    scopes,
    purposes,
    clinicalAccess: body.clinicalAccess === true,
    jwks,
    withSecret,
  };
}

/** Private-key members of RSA and EC JWKs (RFC 7518 §6) and the symmetric `k` of `oct` keys. */
const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];
/** What a client's public key may carry; anything else is dropped, so only public parameters are stored and echoed. */
const PUBLIC_JWK_MEMBERS: Record<string, string[]> = {
  RSA: ['n', 'e'],
  EC: ['crv', 'x', 'y'],
};
const COMMON_JWK_MEMBERS = ['kty', 'kid', 'alg', 'use', 'key_ops'];

/**
 * A client's JWKS holds public keys for its assertions (RS384/ES384). A private or symmetric key
 * there means the client's secret has been handed over: refused, naming the key, never stored.
 */
function publicClientJwks(value: unknown): JSONWebKeySet {
  const keys = (value as { keys?: unknown } | null)?.keys;
  if (typeof value !== 'object' || value === null || Array.isArray(value) || !Array.isArray(keys)) {
    throw FhirError.badRequest('jwks: must be a JWK Set {"keys": [...]}', ['jwks']);
  }
  return {
    keys: keys.map((key: unknown, i) => {
      const path = `jwks.keys[${i}]`;
      if (typeof key !== 'object' || key === null || Array.isArray(key)) throw FhirError.badRequest(`${path}: must be a JWK object`, [path]);
      const jwk = key as Record<string, unknown>;
      const secret = PRIVATE_JWK_MEMBERS.find((m) => m in jwk);
      if (jwk.kty === 'oct' || secret) {
        const what = jwk.kty === 'oct' ? 'a symmetric (kty oct) key' : `a private key (member "${secret}")`;
        throw FhirError.badRequest(`${path}: is ${what}; register only the public key`, [path]);
      }
      const members = typeof jwk.kty === 'string' ? PUBLIC_JWK_MEMBERS[jwk.kty] : undefined;
      if (!members) throw FhirError.badRequest(`${path}.kty: must be RSA or EC`, [`${path}.kty`]);
      return Object.fromEntries(Object.entries(jwk).filter(([m]) => COMMON_JWK_MEMBERS.includes(m) || members.includes(m)));
    }),
  };
}
