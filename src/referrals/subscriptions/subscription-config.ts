import { ConfigurationError } from '../../config/app.config';

/** Rest-hook delivery settings (environment; docs/referrals.md, Subscriptions). */
export interface SubscriptionConfig {
  /** URL prefixes a Subscription's channel.endpoint must start with (SUBSCRIPTION_ENDPOINT_ALLOW, comma-separated). */
  endpointAllow: readonly string[];
  /** Loopback endpoints (127.0.0.0/8, ::1, localhost): development and test only. */
  allowLoopback: boolean;
  /** Failed deliveries in a row after which the Subscription becomes `error`. */
  errorAfterFailures: number;
  /** Retries of one notification after its first attempt (then it is given up: deleted, logged with ids). */
  retryLimit: number;
  /** Seconds before the first retry; doubled per attempt with jitter, capped by retryDelayMaxSeconds. */
  retryDelaySeconds: number;
  retryDelayMaxSeconds: number;
  /** One POST's time limit. */
  timeoutMs: number;
  /** Notifications sent at once per node. */
  concurrency: number;
  /** Notifications a node's worker claims together (one claim, one settle statement per batch). */
  deliveryBatchSize: number;
  /** How often an idle worker looks for due notifications (this node's match job wakes it at once). */
  deliveryPollMs: number;
  /** The least lease of a claimed batch (longer when the batch's POSTs could take longer): a batch whose worker died is sent again after it. */
  deliveryLeaseMinSeconds: number;
  /** How long a node reuses the list of a type's Subscriptions and a subscriber's access context. */
  cacheMs: number;
  /** Pending matches (one per write that may notify) a node's match job claims together (one access statement per batch). */
  matchBatchSize: number;
  /** How often an idle node looks for pending matches (a write's commit wakes no one: the matches committed between two polls are judged together). */
  matchPollMs: number;
  /** A claimed batch of pending matches is this node's for this long: a batch whose worker died is judged again after it. */
  matchLeaseSeconds: number;
}

/** How a failed notification or match batch is retried (as pg-boss's retryBackoff did): `delay * 2^attempts * (1 + random)`, capped; given up after `retryLimit` retries. */
export interface RetryPolicy {
  retryLimit: number;
  retryDelaySeconds: number;
  retryDelayMaxSeconds: number;
}

export const SUBSCRIPTION_CONFIG = Symbol('SUBSCRIPTION_CONFIG');

function int(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new ConfigurationError(`${name} must be an integer from ${min} to ${max}`);
  return n;
}

export function loadSubscriptionConfig(env: NodeJS.ProcessEnv = process.env): SubscriptionConfig {
  const endpointAllow = (env.SUBSCRIPTION_ENDPOINT_ALLOW ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  for (const prefix of endpointAllow) {
    let url: URL;
    try {
      url = new URL(prefix);
    } catch {
      throw new ConfigurationError(`SUBSCRIPTION_ENDPOINT_ALLOW: ${prefix} is not an absolute URL`);
    }
    // A prefix must end its host part, or https://hospital.example would allow https://hospital.example.evil.
    if (!['https:', 'http:'].includes(url.protocol) || !/^https?:\/\/[^/]+\//.test(prefix)) {
      throw new ConfigurationError(`SUBSCRIPTION_ENDPOINT_ALLOW: ${prefix} must be an http(s) URL ending its host with /`);
    }
  }
  const nodeEnv = env.NODE_ENV ?? 'development';
  return {
    endpointAllow,
    allowLoopback: nodeEnv === 'development' || nodeEnv === 'test',
    errorAfterFailures: int(env, 'SUBSCRIPTION_ERROR_AFTER_FAILURES', 5, 1, 1000),
    retryLimit: int(env, 'SUBSCRIPTION_RETRY_LIMIT', 10, 0, 100),
    retryDelaySeconds: int(env, 'SUBSCRIPTION_RETRY_DELAY_SECONDS', 5, 1, 3600),
    retryDelayMaxSeconds: int(env, 'SUBSCRIPTION_RETRY_DELAY_MAX_SECONDS', 3600, 1, 86_400),
    timeoutMs: int(env, 'SUBSCRIPTION_TIMEOUT_MS', 10_000, 100, 120_000),
    concurrency: int(env, 'SUBSCRIPTION_DELIVERY_CONCURRENCY', 8, 1, 256),
    deliveryBatchSize: int(env, 'SUBSCRIPTION_DELIVERY_BATCH_SIZE', 32, 1, 1000),
    deliveryPollMs: int(env, 'SUBSCRIPTION_DELIVERY_POLL_MS', 500, 50, 60_000),
    deliveryLeaseMinSeconds: int(env, 'SUBSCRIPTION_DELIVERY_LEASE_SECONDS', 30, 2, 3600),
    cacheMs: int(env, 'SUBSCRIPTION_CACHE_MS', 1000, 0, 60_000),
    matchBatchSize: int(env, 'SUBSCRIPTION_MATCH_BATCH_SIZE', 200, 1, 1000),
    matchPollMs: int(env, 'SUBSCRIPTION_MATCH_POLL_MS', 500, 50, 60_000),
    matchLeaseSeconds: int(env, 'SUBSCRIPTION_MATCH_LEASE_SECONDS', 60, 2, 3600),
  };
}
