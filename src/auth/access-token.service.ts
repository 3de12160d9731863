import { randomUUID } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { createLocalJWKSet, decodeProtectedHeader, errors, jwtVerify, SignJWT } from 'jose';
import { APP_CONFIG, AppConfig } from '../config/app.config';
import type { HieRole, Principal } from '../fhir/pipeline/principal';
import { ClientRegistrationCache } from './client-registration.cache';
import { ClientRegistrationRepository, ROLES } from './client-registration.repository';
import { ClientSecretHasher } from './client-secret.hasher';
import { purposeAllowedForRole } from './purpose-of-use';
import { grantScopes } from './smart-scope';
import { ACCESS_TOKEN_ALG, SigningKeyStore } from './signing-key.store';

export const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
export const CLIENT_ASSERTION_ALGS = ['RS384', 'ES384'];
const MAX_ASSERTION_LIFETIME_SECONDS = 300;
/** Clock skew tolerated between a client (or another node) and this server: an `iat` further ahead was not issued now. */
const MAX_CLOCK_SKEW_SECONDS = 60;
/** The longest lifetime ACCESS_TOKEN_TTL_SECONDS allows: a token claiming more was not issued here. */
const MAX_ACCESS_TOKEN_LIFETIME_SECONDS = 3600;
/** Verified tokens remembered (bounded; the oldest go first). */
const MAX_VERIFIED_TOKENS = 10_000;

/** An RFC 6749 token-endpoint error (`invalid_client`, `invalid_scope`, …). */
export class OAuthError extends Error {
  constructor(
    readonly error: string,
    readonly description: string,
    readonly status = 400,
  ) {
    super(description);
  }
}

export interface TokenRequest {
  grant_type?: string;
  scope?: string;
  client_id?: string;
  client_secret?: string;
  client_assertion_type?: string;
  client_assertion?: string;
  purpose_of_use?: string;
  /** Space-separated `Practitioner/{id}`, `PractitionerRole/{id}` or `CareTeam/{id}` the request is made for (docs/security.md). */
  on_behalf_of?: string;
  /** From an `Authorization: Basic` header (client_secret_basic). */
  basic?: { clientId: string; secret: string };
}

export interface IssuedToken {
  access_token: string;
  token_type: 'bearer';
  expires_in: number;
  scope: string;
  clientId: string;
  organization: string;
  role: HieRole;
  purposeOfUse: string;
  onBehalfOf?: string[];
}

interface AccessTokenClaims {
  client_id: string;
  org: string;
  role: HieRole;
  scope: string;
  pou: string;
  /** on_behalf_of, when the request declared it. */
  obo?: string[];
}

/** Who a token may act for: an individual or a team of the organization (Consent actors, docs/consent.md). */
const ON_BEHALF_OF_RE = /^(Practitioner|PractitionerRole|CareTeam)\/[A-Za-z0-9\-.]{1,64}$/;
const MAX_ON_BEHALF_OF = 5;

/** The token request's on_behalf_of as a list; refuses anything but a few Practitioner/PractitionerRole/CareTeam references. */
export function parseOnBehalfOf(value: string | undefined): string[] {
  if (value === undefined) return [];
  const refs = [...new Set(String(value).split(' ').filter(Boolean))];
  if (!refs.length || refs.length > MAX_ON_BEHALF_OF || !refs.every((r) => ON_BEHALF_OF_RE.test(r))) {
    throw new OAuthError('invalid_request', `on_behalf_of must be 1 to ${MAX_ON_BEHALF_OF} space-separated references Practitioner/{id}, PractitionerRole/{id} or CareTeam/{id}`);
  }
  return refs;
}

/**
 * SMART Backend Services token endpoint logic (client_credentials with private_key_jwt, or a client
 * secret) and verification of the access tokens it issues.
 */
@Injectable()
export class AccessTokenService {
  /**
   * Tokens whose signature and claims were verified, until they expire: a client sends the same
   * token for minutes, and the ES256 check plus the key lookup cost more than the rest of a read.
   * The client's status is still checked on every request (ClientRegistrationCache).
   */
  private readonly verified = new Map<string, { claims: AccessTokenClaims; expiresAtMs: number }>();

  constructor(
    private readonly clients: ClientRegistrationRepository,
    private readonly clientStatus: ClientRegistrationCache,
    private readonly secrets: ClientSecretHasher,
    private readonly keys: SigningKeyStore,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /**
   * `onAuthenticated` runs once the client is verified, before anything else is checked or signed
   * (the token endpoint spends the client's own rate-limit budget there, never on failed attempts).
   */
  async issue(req: TokenRequest, onAuthenticated?: (clientId: string) => Promise<void>): Promise<IssuedToken> {
    // RFC 6749 §5.2: a missing parameter is invalid_request; a grant this server does not offer is unsupported.
    if (req.grant_type === undefined || req.grant_type === '') throw new OAuthError('invalid_request', 'grant_type is required');
    if (req.grant_type !== 'client_credentials') {
      throw new OAuthError('unsupported_grant_type', 'grant_type must be client_credentials');
    }
    const client = await this.authenticateClient(req);
    await onAuthenticated?.(client.clientId);
    // RFC 6749 §3.3: without `scope` the server applies its documented default, the client's
    // registered scopes (an extension to Backend Services, which requires scope: MedplumClient's
    // client-credentials login sends none). The response's `scope` says what was granted (§5.1).
    const requested = req.scope === undefined ? client.scopes : req.scope.split(/\s+/).filter(Boolean);
    if (!requested.length) throw new OAuthError('invalid_scope', 'scope is empty: omit it for the registered scopes, or name some');
    const granted = grantScopes(requested, client.scopes);
    if (!granted.length) throw new OAuthError('invalid_scope', 'none of the requested scopes is registered for this client');
    const purpose = req.purpose_of_use ?? client.purposes[0];
    if (!purpose || !client.purposes.includes(purpose)) {
      throw new OAuthError('invalid_request', `purpose_of_use '${String(purpose).slice(0, 20)}' is not registered for this client`);
    }
    // A registration made before the role rule (or edited in SQL) must not yield a token for a purpose its role may not hold.
    if (!purposeAllowedForRole(client.role, purpose)) {
      throw new OAuthError('invalid_request', `purpose_of_use '${purpose}' is not allowed for the ${client.role} role`);
    }
    const onBehalfOf = parseOnBehalfOf(req.on_behalf_of);
    const { kid, key } = await this.keys.signingKey();
    const ttl = this.config.accessTokenTtlSeconds;
    const claims: AccessTokenClaims = {
      client_id: client.clientId,
      org: client.organization,
      role: client.role,
      scope: granted.join(' '),
      pou: purpose,
      ...(onBehalfOf.length ? { obo: onBehalfOf } : {}),
    };
    const token = await new SignJWT({ ...claims })
      .setProtectedHeader({ alg: ACCESS_TOKEN_ALG, kid, typ: 'at+jwt' })
      .setIssuer(this.config.publicBaseUrl)
      .setAudience(this.config.fhirBaseUrl)
      .setSubject(client.clientId)
      .setJti(randomUUID())
      .setIssuedAt()
      .setExpirationTime(`${ttl}s`)
      .sign(key);
    return {
      access_token: token,
      token_type: 'bearer',
      expires_in: ttl,
      scope: claims.scope,
      clientId: client.clientId,
      organization: client.organization,
      role: client.role,
      purposeOfUse: purpose,
      ...(onBehalfOf.length ? { onBehalfOf } : {}),
    };
  }

  /** Verifies an access token and checks the client is still enabled. Throws on any problem. */
  async verify(token: string): Promise<Principal> {
    const claims = await this.verifiedClaims(token);
    const client = await this.clientStatus.status(claims.client_id);
    if (!client || client.disabled) throw new Error('client disabled');
    return {
      kind: 'client',
      clientId: claims.client_id,
      organization: claims.org,
      role: claims.role,
      scopes: claims.scope.split(' '),
      purposeOfUse: claims.pou,
      ...(Array.isArray(claims.obo) && claims.obo.length ? { onBehalfOf: claims.obo } : {}),
      clinicalAccess: client.clinicalAccess,
    };
  }

  private async verifiedClaims(token: string): Promise<AccessTokenClaims> {
    const known = this.verified.get(token);
    if (known && Date.now() < known.expiresAtMs) return known.claims;
    if (known) this.verified.delete(token);
    const jwks = createLocalJWKSet(await this.keys.publicJwks());
    const { payload } = await jwtVerify(token, jwks, {
      issuer: this.config.publicBaseUrl,
      audience: this.config.fhirBaseUrl,
      algorithms: [ACCESS_TOKEN_ALG],
      typ: 'at+jwt',
      // Without these a token signed by our key (a bug, a test tool, a leaked signing call) would never expire.
      requiredClaims: ['exp', 'iat', 'iss', 'aud', 'sub', 'client_id', 'org', 'role', 'scope', 'pou'],
    });
    if (payload.exp! - payload.iat! > MAX_ACCESS_TOKEN_LIFETIME_SECONDS || payload.iat! > Math.floor(Date.now() / 1000) + MAX_CLOCK_SKEW_SECONDS) {
      throw new Error('access token lifetime out of bounds');
    }
    const claims = payload as unknown as AccessTokenClaims;
    // Signed by our key but not as issue() writes it (an older rule, a test tool, a leaked signing
    // call): an unknown role or a purpose the role may not hold is no principal at all (401).
    if (
      typeof claims.client_id !== 'string' ||
      typeof claims.org !== 'string' ||
      typeof claims.scope !== 'string' ||
      !ROLES.includes(claims.role) ||
      !purposeAllowedForRole(claims.role, claims.pou)
    ) {
      throw new Error('access token claims out of bounds');
    }
    if (this.verified.size >= MAX_VERIFIED_TOKENS) this.verified.delete(this.verified.keys().next().value!);
    this.verified.set(token, { claims, expiresAtMs: payload.exp! * 1000 });
    return claims;
  }

  private async authenticateClient(req: TokenRequest) {
    if (req.client_assertion_type !== undefined || req.client_assertion !== undefined) {
      return this.authenticateAssertion(req);
    }
    const clientId = req.basic?.clientId ?? req.client_id;
    const secret = req.basic?.secret ?? req.client_secret;
    if (!clientId || !secret) throw new OAuthError('invalid_client', 'client authentication is required', 401);
    const client = await this.clients.find(clientId);
    // Verified even when the client is unknown or disabled: every refusal costs the same (no enumeration by timing).
    const matches = await this.secrets.verify(secret, client?.secretHash);
    if (!client || client.disabled || !matches) {
      throw new OAuthError('invalid_client', 'client authentication failed', 401);
    }
    return client;
  }

  /** private_key_jwt (RFC 7523, SMART Backend Services): iss = sub = client id, aud = token URL, short exp, unique jti. */
  private async authenticateAssertion(req: TokenRequest) {
    if (req.client_assertion_type !== CLIENT_ASSERTION_TYPE || !req.client_assertion) {
      throw new OAuthError('invalid_client', `client_assertion_type must be ${CLIENT_ASSERTION_TYPE} with a client_assertion`, 401);
    }
    let clientId: string | undefined;
    try {
      const [, body] = req.client_assertion.split('.');
      clientId = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')).iss;
      decodeProtectedHeader(req.client_assertion);
    } catch {
      throw new OAuthError('invalid_client', 'client_assertion is not a JWT', 401);
    }
    const client = typeof clientId === 'string' ? await this.clients.find(clientId) : undefined;
    if (!client || client.disabled || !client.jwks) throw new OAuthError('invalid_client', 'unknown or disabled client, or no registered keys', 401);
    let payload;
    try {
      ({ payload } = await jwtVerify(req.client_assertion, createLocalJWKSet(client.jwks), {
        issuer: client.clientId,
        subject: client.clientId,
        audience: this.config.tokenUrl,
        algorithms: CLIENT_ASSERTION_ALGS,
        requiredClaims: ['exp', 'jti'],
      }));
    } catch (err) {
      const reason = err instanceof errors.JWTExpired ? 'client_assertion has expired' : 'client_assertion could not be verified';
      throw new OAuthError('invalid_client', reason, 401);
    }
    const now = Math.floor(Date.now() / 1000);
    if (payload.exp! > now + MAX_ASSERTION_LIFETIME_SECONDS) {
      throw new OAuthError('invalid_client', 'client_assertion exp must be at most 5 minutes ahead', 401);
    }
    // An assertion "issued" in the future was made ahead of time to be replayed later; jose checks only that iat is a number.
    if (payload.iat !== undefined && payload.iat > now + MAX_CLOCK_SKEW_SECONDS) {
      throw new OAuthError('invalid_client', `client_assertion iat must be at most ${MAX_CLOCK_SKEW_SECONDS} s ahead of the server clock`, 401);
    }
    if (!(await this.clients.useAssertionId(client.clientId, String(payload.jti), new Date(payload.exp! * 1000)))) {
      throw new OAuthError('invalid_client', 'client_assertion jti was already used', 401);
    }
    return client;
  }
}
