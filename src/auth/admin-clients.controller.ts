import { Body, Controller, Get, HttpCode, Param, Post, Req } from '@nestjs/common';
import type { Request } from 'express';
import type { JSONWebKeySet } from 'jose';
import { FhirError } from '../common/fhir-error';
import { auditRecord } from '../audit/audit-record';
import { RequestContext } from '../common/request-context';
import { FhirPipeline } from '../fhir/pipeline/fhir-pipeline.service';
import { AuditStage } from '../fhir/pipeline/pipeline.stages';
import { ANONYMOUS, HieRole, Principal } from '../fhir/pipeline/principal';
import { ClientConflictError, ClientRegistrationRepository, ROLES } from './client-registration.repository';
import { PURPOSES_BY_ROLE, PURPOSES_OF_USE } from './purpose-of-use';
import { restrictionClauses } from './scope-restriction';
import { AUDIT_EVENT_SEARCH_PARAMETERS, auditScopeRestriction } from '../audit/audit-event.search';
import { parseSmartScope } from './smart-scope';

/** Client registration for HIE admins (`admin` role only). Answers JSON; errors are OperationOutcomes. */
@Controller('admin/clients')
export class AdminClientsController {
  constructor(
    private readonly clients: ClientRegistrationRepository,
    private readonly audit: AuditStage,
    private readonly pipeline: FhirPipeline,
  ) {}

  @Post()
  create(@Req() req: Request, @Body() body: Record<string, unknown>) {
    return this.audited(req, 'client-register', 201, async () => {
      const input = validateRegistration(body ?? {});
      await this.assertOrganizationExists(req, input.organization);
      try {
        const { client, secret } = await this.clients.create(input);
        return { ...client, ...(secret ? { clientSecret: secret } : {}) };
      } catch (err) {
        if (err instanceof ClientConflictError) throw new FhirError(409, 'duplicate', `Client ${err.clientId} already exists`);
        throw err;
      }
    });
  }

  @Get()
  list(@Req() req: Request) {
    return this.audited(req, 'client-list', 200, () => this.clients.list());
  }

  @Get(':clientId')
  get(@Req() req: Request, @Param('clientId') clientId: string) {
    return this.audited(req, 'client-read', 200, async () => {
      const client = await this.clients.find(clientId);
      if (!client) throw FhirError.notFound(`No client ${clientId.slice(0, 64)}`);
      const { secretHash: _hidden, ...visible } = client;
      return visible;
    });
  }

  @Post(':clientId/disable')
  @HttpCode(200)
  disable(@Req() req: Request, @Param('clientId') clientId: string) {
    return this.audited(req, 'client-disable', 200, async () => {
      if (!(await this.clients.setDisabled(clientId, true))) throw FhirError.notFound(`No client ${clientId.slice(0, 64)}`);
      return { clientId, disabled: true };
    });
  }

  @Post(':clientId/enable')
  @HttpCode(200)
  enable(@Req() req: Request, @Param('clientId') clientId: string) {
    return this.audited(req, 'client-enable', 200, async () => {
      if (!(await this.clients.setDisabled(clientId, false))) throw FhirError.notFound(`No client ${clientId.slice(0, 64)}`);
      return { clientId, disabled: false };
    });
  }

  @Post(':clientId/rotate-secret')
  @HttpCode(200)
  rotateSecret(@Req() req: Request, @Param('clientId') clientId: string) {
    return this.audited(req, 'client-rotate-secret', 200, async () => {
      const secret = await this.clients.rotateSecret(clientId);
      if (!secret) throw FhirError.notFound(`No client ${clientId.slice(0, 64)}`);
      return { clientId, clientSecret: secret };
    });
  }

  /** A client belongs to an Organization resource: read through the pipeline, as the admin. */
  private async assertOrganizationExists(req: Request, id: string): Promise<void> {
    const principal = (req as Request & { user?: Principal }).user ?? ANONYMOUS;
    try {
      await this.pipeline.handle(principal, { kind: 'read', resourceType: 'Organization', id, query: {}, path: `/Organization/${id}` });
    } catch (err) {
      if (err instanceof FhirError && (err.status === 404 || err.status === 410)) {
        throw new FhirError(422, 'not-found', `organization: there is no Organization/${id}; create it first (PUT /fhir/Organization/${id})`, ['organization']);
      }
      throw err;
    }
  }

  /** Admin role only (default deny); every call, allowed or denied, goes to the audit stage. */
  private async audited<T>(req: Request, operation: string, status: number, work: () => Promise<T>): Promise<T> {
    const started = performance.now();
    const principal = (req as Request & { user?: Principal }).user ?? ANONYMOUS;
    const record = (outcome: 'success' | 'failure', code: number, clientId?: string, failureCode?: string) =>
      this.audit.record(
        auditRecord({
          kind: 'admin',
          subtype: operation,
          principal,
          address: req.ip,
          path: req.path,
          outcome,
          status: code,
          failureCode,
          // The registration touched is named by id; it is no patient's data.
          entities: clientId ? [{ reference: `client/${clientId}`, patients: [] }] : [],
          accessBasis: ['policy: admin role'],
          durationMs: Math.round(performance.now() - started),
          requestId: RequestContext.requestId(),
        }),
      );
    try {
      if (principal.role !== 'admin') throw FhirError.forbidden('Client registration needs the admin role');
      const result = await work();
      const clientId = (result as { clientId?: unknown } | undefined)?.clientId;
      await record('success', status, typeof clientId === 'string' ? clientId : undefined);
      return result;
    } catch (err) {
      await record('failure', err instanceof FhirError ? err.status : 500, undefined, err instanceof FhirError ? err.issues[0]?.code : 'exception');
      throw err;
    }
  }
}

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
