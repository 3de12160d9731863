import { Body, Controller, Get, Headers, HttpCode, Inject, Post, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { SkipThrottle } from '@nestjs/throttler';
import { decodeJwt } from 'jose';
import { APP_CONFIG, AppConfig, loadAppConfig } from '../config/app.config';
import { auditRecord } from '../fhir/pipeline/audit-record';
import { FhirError } from '../common/fhir-error';
import { RequestContext } from '../common/request-context';
import { AuditStage } from '../fhir/pipeline/pipeline.stages';
import { ANONYMOUS } from '../fhir/pipeline/principal';
import { AccessTokenService, CLIENT_ASSERTION_ALGS, OAuthError, TokenRequest } from '../auth/access-token.service';
import { parseBasicCredentials } from '../auth/basic-credentials';
import { Public } from '../auth/public.decorator';
import { RateLimitArea } from '../auth/rate-limit-area.decorator';
import { SigningKeyStore } from '../auth/signing-key.store';
import { TokenEndpointThrottle } from '../auth/token-endpoint.throttle';

/**
 * SMART App Launch 2.x discovery is at the FHIR base + `/.well-known/smart-configuration` (where
 * `fhirclient` and other SMART clients look); the root one is kept for clients configured with it.
 * The base path is part of the route table, so it is read when the module is defined (as app.module does).
 */
const SMART_CONFIGURATION_PATHS = ['.well-known/smart-configuration', `${loadAppConfig().fhirBasePath.replace(/^\/+/, '')}/.well-known/smart-configuration`];

/** OAuth 2.0 token endpoint and the discovery documents (SMART App Launch 2.x, Backend Services). */
// POST /oauth2/token limits itself by source address (TokenEndpointThrottle), so the client guard skips it.
@RateLimitArea('token')
@Controller()
export class TokenController {
  constructor(
    private readonly tokens: AccessTokenService,
    private readonly keys: SigningKeyStore,
    private readonly audit: AuditStage,
    private readonly throttle: TokenEndpointThrottle,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  @Post('oauth2/token')
  @SkipThrottle()
  @HttpCode(200)
  @Public('OAuth token endpoint: clients authenticate in the request itself')
  async token(
    @Body() body: Record<string, string | undefined>,
    @Headers('authorization') authorization: string | undefined,
    @Req() req: Request,
    @Res() res: Response,
  ): Promise<void> {
    const started = performance.now();
    const basic = parseBasicCredentials(authorization);
    const request: TokenRequest = { ...(body ?? {}), basic: basic && !('malformed' in basic) ? basic : undefined };
    const address = req.ip ?? req.socket.remoteAddress ?? 'unknown';
    // Broken percent-encoding still counts against the client id as sent.
    const claimed = basic && 'malformed' in basic ? basic.rawClientId : claimedBy(request);
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('Pragma', 'no-cache');
    let authenticated = false;
    try {
      await this.throttle.beforeAttempt(address, claimed);
      if (basic && 'malformed' in basic) {
        throw new OAuthError('invalid_client', 'The Basic credentials are not correctly percent-encoded (RFC 6749 section 2.3.1)', 401);
      }
      const issued = await this.tokens.issue(request, async (clientId) => {
        authenticated = true;
        await this.throttle.authenticated(clientId);
      });
      await this.record('success', 200, started, {
        kind: 'client',
        clientId: issued.clientId,
        organization: issued.organization,
        role: issued.role,
        scopes: issued.scope.split(' '),
        purposeOfUse: issued.purposeOfUse,
        ...(issued.onBehalfOf ? { onBehalfOf: issued.onBehalfOf } : {}),
      }, address);
      const { access_token, token_type, expires_in, scope } = issued;
      res.status(200).json({ access_token, token_type, expires_in, scope });
    } catch (err) {
      if (err instanceof FhirError && err.status === 429) {
        await this.record('failure', 429, started, ANONYMOUS, address, auditableClientId(claimed));
        throw err;
      }
      if (!(err instanceof OAuthError)) throw err;
      // Only attempts that did not authenticate are failures of the address; a verified client's
      // own mistakes (scope, purpose) were already counted against its budget.
      if (!authenticated) await this.throttle.failed(address, claimed);
      await this.record('failure', err.status, started, ANONYMOUS, address, auditableClientId(claimed));
      if (err.status === 401) res.setHeader('WWW-Authenticate', 'Basic realm="token"');
      // Credentials that cannot even be decoded are malformed input: an OperationOutcome naming the
      // header (issue 9), after they were counted and audited like any refused attempt.
      if (basic && 'malformed' in basic) throw new FhirError(401, 'login', err.description, ['Authorization'], { 'WWW-Authenticate': 'Basic realm="token"' });
      res.status(err.status).json({ error: err.error, error_description: err.description });
    }
  }

  @Get(SMART_CONFIGURATION_PATHS)
  @Public('SMART discovery document: tells clients where and how to get a token')
  smartConfiguration() {
    // SMART App Launch 2.x field table, Backend Services only (docs/security.md): no `issuer` (only
    // with sso-openid-connect), no authorization endpoint, PKCE or launch capabilities (no
    // authorization-code flow here); the signing algorithms are the ones assertions are verified with.
    return {
      token_endpoint: this.config.tokenUrl,
      jwks_uri: `${this.config.publicBaseUrl}/.well-known/jwks.json`,
      grant_types_supported: ['client_credentials'],
      token_endpoint_auth_methods_supported: ['private_key_jwt', 'client_secret_basic', 'client_secret_post'],
      token_endpoint_auth_signing_alg_values_supported: CLIENT_ASSERTION_ALGS,
      scopes_supported: ['system/*.cruds', 'system/*.rs', 'system/*.read', 'system/*.write', 'system/*.*'],
      capabilities: ['client-confidential-asymmetric', 'client-confidential-symmetric', 'permission-v1', 'permission-v2'],
    };
  }

  @Get('.well-known/jwks.json')
  @Public('Public keys that verify this server’s access tokens')
  jwks() {
    return this.keys.publicJwks();
  }

  private async record(
    outcome: 'success' | 'failure',
    status: number,
    started: number,
    principal: typeof ANONYMOUS,
    address: string,
    claimed?: string,
  ): Promise<void> {
    await this.audit.record(
      auditRecord({
        kind: 'token',
        principal,
        ...(claimed ? { claimedClientId: claimed } : {}),
        address,
        path: '/oauth2/token',
        outcome,
        status,
        failureCode: outcome === 'failure' ? (status === 429 ? 'throttled' : 'login') : undefined,
        durationMs: Math.round(performance.now() - started),
        requestId: RequestContext.requestId(),
      }),
    );
  }
}

/** The client id a token request claims: Basic user, `client_id`, or the assertion's `iss` (read, not verified). */
function claimedBy(request: TokenRequest): string | undefined {
  let claimed: unknown = request.basic?.clientId ?? request.client_id;
  if (!claimed && request.client_assertion) {
    try {
      claimed = decodeJwt(request.client_assertion).iss;
    } catch {
      claimed = undefined;
    }
  }
  return typeof claimed === 'string' && claimed ? claimed : undefined;
}

/** Only id-shaped claims reach the audit record, so nothing else a client sends is logged. */
function auditableClientId(claimed: string | undefined): string | undefined {
  return claimed && /^[A-Za-z0-9._~:-]{1,128}$/.test(claimed) ? claimed : undefined;
}
