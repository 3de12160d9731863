import type { SubscriptionConfig } from './subscription-config';

/** Hosts that reach this machine: allowed as endpoints only in development and test. */
function isLoopback(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h.endsWith('.localhost') || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/**
 * Why a rest-hook endpoint may not be called, or undefined when it may (docs/referrals.md):
 * an absolute http(s) URL without credentials that starts with an allow-listed prefix (compared on
 * the parsed, normalized URL, so `https://ok.example/@evil` or `https://ok.example.evil/` do not
 * pass for `https://ok.example/`), or a loopback URL where loopback is allowed.
 */
export function endpointRefusal(endpoint: string | undefined, config: Pick<SubscriptionConfig, 'endpointAllow' | 'allowLoopback'>): string | undefined {
  if (!endpoint) return 'channel.endpoint is required for a rest-hook Subscription';
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    return 'channel.endpoint is not an absolute URL';
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return 'channel.endpoint must be an http(s) URL';
  if (url.username || url.password) return 'channel.endpoint may not carry credentials (use the secret extension or channel.header)';
  if (config.allowLoopback && isLoopback(url.hostname)) return undefined;
  if (config.endpointAllow.some((prefix) => url.href.startsWith(prefix))) return undefined;
  return `channel.endpoint ${url.origin} is not among the endpoints this server may call (SUBSCRIPTION_ENDPOINT_ALLOW)`;
}
