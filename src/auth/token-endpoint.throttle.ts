import { createHash } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { InjectThrottlerStorage, ThrottlerStorage } from '@nestjs/throttler';
import { FhirError } from '../common/fhir-error';
import { APP_CONFIG, AppConfig } from '../config/app.config';
import { PostgresThrottlerStorage } from './rate-limit.storage';

const WINDOW_MS = 60_000;
const THROTTLER = 'default';

/**
 * Rate limits of `POST /oauth2/token`, where nobody is authenticated when the request arrives. A
 * claimed client id is only a claim, so it never selects the budget a request spends before it is
 * verified:
 * - failed attempts (anything refused before the client authenticated) count per source address
 *   and per (address, claimed id); once either is used up, that address (or that address for that
 *   id) gets 429 before any credential is looked at;
 * - a client's own budget (RATE_LIMIT_PER_MINUTE, as on the API) is spent only by requests that
 *   authenticated as that client.
 * So a flood claiming a victim's id from elsewhere neither locks the victim out nor can guess on
 * without limit. Counters are the shared PostgreSQL sliding windows of the rest of the API (keys hashed).
 */
@Injectable()
export class TokenEndpointThrottle {
  constructor(
    @InjectThrottlerStorage() private readonly storage: ThrottlerStorage,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** Before any credential is verified: refuse an address (or address + claimed id) out of failed attempts. */
  async beforeAttempt(address: string, claimedId: string | undefined): Promise<void> {
    const keys = failureKeys(address, claimedId);
    const limits = [this.config.tokenFailuresPerAddress, this.config.tokenFailuresPerClaimedId].slice(0, keys.length);
    const { room, timeToExpire } = await (this.storage as PostgresThrottlerStorage).room(keys, limits, WINDOW_MS, THROTTLER);
    // No room for one more failure in the sliding window of the address, or of the address and claimed id.
    if (room.some((left) => left < 1)) {
      throw throttled('Too many failed token requests from this address; retry later', timeToExpire);
    }
  }

  /** A refused attempt of an unauthenticated request. */
  async failed(address: string, claimedId: string | undefined): Promise<void> {
    // Counted whatever the limit (beforeAttempt judges): no limit here, so no failure is given back.
    await Promise.all(failureKeys(address, claimedId).map((key) => this.storage.increment(key, WINDOW_MS, Number.MAX_SAFE_INTEGER, WINDOW_MS, THROTTLER)));
  }

  /** A request that authenticated as this client spends the client's own token budget. */
  async authenticated(clientId: string): Promise<void> {
    const limit = this.config.rateLimitPerMinute;
    const { isBlocked, timeToBlockExpire } = await this.storage.increment(tokenKey(`client:${clientId}`), WINDOW_MS, limit, WINDOW_MS, THROTTLER);
    if (isBlocked) throw throttled('Too many token requests for this client; retry later', timeToBlockExpire);
  }
}

/** The same key ClientThrottlerGuard would build for the token area, so a client keeps one token budget. */
function tokenKey(tracker: string): string {
  return createHash('sha256').update(`${THROTTLER}-token-${tracker}`).digest('hex');
}

function failureKeys(address: string, claimedId: string | undefined): string[] {
  const keys = [tokenKey(`failed-address:${address}`)];
  if (claimedId) keys.push(tokenKey(`failed-address-client:${address} ${claimedId.slice(0, 256)}`));
  return keys;
}

function throttled(diagnostics: string, retryAfterSeconds: number): FhirError {
  return new FhirError(429, 'throttled', diagnostics, undefined, { 'Retry-After': String(retryAfterSeconds) });
}
