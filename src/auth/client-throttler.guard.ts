import { createHash } from 'node:crypto';
import { ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { InjectThrottlerOptions, InjectThrottlerStorage, ThrottlerGuard, ThrottlerLimitDetail, ThrottlerModuleOptions, ThrottlerStorage } from '@nestjs/throttler';
import { RequestContext } from '../common/request-context';
import { AuditStage } from '../fhir/pipeline/pipeline.stages';
import { ANONYMOUS, Principal } from '../fhir/pipeline/principal';
import { parseBasicCredentials } from './basic-credentials';
import { TokenController } from './token.controller';

/**
 * Rate limit per client across all routes (per IP before authentication). Counters live in
 * PostgreSQL (PostgresThrottlerStorage), so all app nodes share them. A throttled request is a
 * denial, so it is audited.
 */
@Injectable()
export class ClientThrottlerGuard extends ThrottlerGuard {
  constructor(
    @InjectThrottlerOptions() options: ThrottlerModuleOptions,
    @InjectThrottlerStorage() storage: ThrottlerStorage,
    reflector: Reflector,
    private readonly audit: AuditStage,
  ) {
    super(options, storage, reflector);
  }

  /** The authenticated client; at the token endpoint the client asking for a token; else the IP. */
  protected override async getTracker(req: Record<string, unknown>): Promise<string> {
    const user = req.user as { clientId?: string } | undefined;
    if (user?.clientId) return `client:${user.clientId}`;
    const asking = tokenRequestClientId(req);
    return asking ? `client:${asking}` : `ip:${String(req.ip)}`;
  }

  /**
   * One budget per client for the API and one for the token endpoint, not one per route handler
   * (the library's default key includes the handler). Hashed: the store holds no client ids or IPs.
   */
  protected override generateKey(context: ExecutionContext, tracker: string, throttlerName: string): string {
    const area = context.getClass() === TokenController ? 'token' : 'api';
    return createHash('sha256').update(`${throttlerName}-${area}-${tracker}`).digest('hex');
  }

  protected override async throwThrottlingException(context: ExecutionContext, detail: ThrottlerLimitDetail): Promise<void> {
    const req = context.switchToHttp().getRequest<{ user?: Principal; id?: string }>();
    await this.audit.record({
      principal: req.user ?? ANONYMOUS,
      interaction: { kind: 'operation', operation: 'rate-limit', query: {}, path: `${context.getClass().name}.${context.getHandler().name}` },
      outcome: 'failure',
      status: 429,
      entities: [],
      durationMs: 0,
      requestId: RequestContext.requestId() ?? req.id,
    });
    return super.throwThrottlingException(context, detail);
  }
}

/** `client_id` of a token request (form body, or the user of HTTP Basic), for per-client limits. */
function tokenRequestClientId(req: Record<string, unknown>): string | undefined {
  const body = req.body as { client_id?: unknown } | undefined;
  if (typeof body?.client_id === 'string' && body.client_id) return body.client_id;
  const basic = parseBasicCredentials((req.headers as Record<string, string | undefined> | undefined)?.authorization);
  // Broken percent-encoding still counts, against the client id as sent.
  const user = basic && ('malformed' in basic ? basic.rawClientId : basic.clientId);
  return user || undefined;
}
