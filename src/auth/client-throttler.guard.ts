import { Injectable } from '@nestjs/common';
import { ThrottlerGuard } from '@nestjs/throttler';

/**
 * Rate limit per client (per IP before authentication). Counters live in this process, so with N
 * app nodes a client gets up to N times the limit; a shared store is the step when that matters.
 */
@Injectable()
export class ClientThrottlerGuard extends ThrottlerGuard {
  protected override async getTracker(req: Record<string, unknown>): Promise<string> {
    const user = req.user as { clientId?: string } | undefined;
    return user?.clientId ? `client:${user.clientId}` : `ip:${String(req.ip)}`;
  }
}
