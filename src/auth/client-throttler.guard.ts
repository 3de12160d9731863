import { ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { InjectThrottlerOptions, InjectThrottlerStorage, ThrottlerGuard, ThrottlerLimitDetail, ThrottlerModuleOptions, ThrottlerStorage } from '@nestjs/throttler';
import { RequestContext } from '../common/request-context';
import { AuditStage } from '../fhir/pipeline/pipeline.stages';
import { ANONYMOUS, Principal } from '../fhir/pipeline/principal';

/**
 * Rate limit per client (per IP before authentication). Counters live in this process, so with N
 * app nodes a client gets up to N times the limit; a shared store is the step when that matters.
 * A throttled request is a denial, so it is audited.
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

  protected override async getTracker(req: Record<string, unknown>): Promise<string> {
    const user = req.user as { clientId?: string } | undefined;
    return user?.clientId ? `client:${user.clientId}` : `ip:${String(req.ip)}`;
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
