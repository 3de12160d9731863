import { createHash } from 'node:crypto';
import { ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { InjectThrottlerOptions, InjectThrottlerStorage, ThrottlerGuard, ThrottlerLimitDetail, ThrottlerModuleOptions, ThrottlerStorage } from '@nestjs/throttler';
import { auditRecord } from '../fhir/pipeline/audit-record';
import { RequestContext } from '../common/request-context';
import { AuditStage } from '../fhir/pipeline/pipeline.stages';
import { ANONYMOUS, Principal } from '../fhir/pipeline/principal';
import { LeasedThrottlerStorage, PostgresThrottlerStorage } from './rate-limit.storage';
import { RATE_LIMIT_AREA } from './rate-limit-area.decorator';

/** Counter keys by their unhashed text, bounded (cleared when full): one per client and area, or per address. */
const MAX_KEYS = 10_000;

/**
 * Rate limit per client across all routes (per IP before authentication). Counters live in
 * PostgreSQL (PostgresThrottlerStorage), so all app nodes share them; each node leases budget from
 * them in batches (LeasedThrottlerStorage). A throttled request is a
 * denial, so it is audited. `POST /oauth2/token` limits itself (TokenEndpointThrottle): before
 * authentication the only trustworthy key is the source address.
 */
@Injectable()
export class ClientThrottlerGuard extends ThrottlerGuard {
  private readonly keys = new Map<string, string>();

  constructor(
    @InjectThrottlerOptions() options: ThrottlerModuleOptions,
    @InjectThrottlerStorage() storage: ThrottlerStorage,
    reflector: Reflector,
    private readonly audit: AuditStage,
  ) {
    // The API spends budget leased in batches from the shared counters (no round trip per request).
    super(options, storage instanceof PostgresThrottlerStorage ? new LeasedThrottlerStorage(storage) : storage, reflector);
  }

  /** The authenticated client, else the IP (never a client id the request merely claims). */
  protected override async getTracker(req: Record<string, unknown>): Promise<string> {
    const user = req.user as { clientId?: string } | undefined;
    return user?.clientId ? `client:${user.clientId}` : `ip:${String(req.ip)}`;
  }

  /**
   * One budget per client for the API and one for the token endpoint, not one per route handler
   * (the library's default key includes the handler). Hashed: the store holds no client ids or IPs.
   */
  protected override generateKey(context: ExecutionContext, tracker: string, throttlerName: string): string {
    const area = this.reflector.getAllAndOverride<string>(RATE_LIMIT_AREA, [context.getHandler(), context.getClass()]) ?? 'api';
    const text = `${throttlerName}-${area}-${tracker}`;
    // The same few keys on every request: hashed once (a pure function of the text; the counters stay shared in PostgreSQL).
    let key = this.keys.get(text);
    if (key === undefined) {
      key = createHash('sha256').update(text).digest('hex');
      if (this.keys.size >= MAX_KEYS) this.keys.clear();
      this.keys.set(text, key);
    }
    return key;
  }

  protected override async throwThrottlingException(context: ExecutionContext, detail: ThrottlerLimitDetail): Promise<void> {
    const req = context.switchToHttp().getRequest<{ user?: Principal; id?: string; ip?: string; path?: string }>();
    await this.audit.record(
      auditRecord({
        kind: 'rate-limit',
        principal: req.user ?? ANONYMOUS,
        address: req.ip,
        path: req.path,
        outcome: 'failure',
        status: 429,
        failureCode: 'throttled',
        durationMs: 0,
        requestId: RequestContext.requestId() ?? req.id,
      }),
    );
    return super.throwThrottlingException(context, detail);
  }
}
