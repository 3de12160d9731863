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

/** At most this many `channel.header` lines, each at most this long. */
export const MAX_CHANNEL_HEADERS = 16;
export const MAX_CHANNEL_HEADER_LENGTH = 1024;

/** `Name: value` with an RFC 9110 token name and a value without control characters (tab allowed). */
const HEADER_LINE = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([^\x00-\x08\x0a-\x1f\x7f]*)$/;

/**
 * Headers the server sets or the HTTP client owns: a `channel.header` line may not replace them
 * (a receiver's duplicate check and signature check rely on the server's values; framing and
 * routing headers are not the subscriber's to choose).
 */
const RESERVED_HEADERS = new Set([
  'x-notification-id',
  'x-subscription-id',
  'x-signature',
  'content-type',
  'content-length',
  'content-encoding',
  'transfer-encoding',
  'host',
  'connection',
  'keep-alive',
  'upgrade',
  'te',
  'trailer',
  'expect',
  'proxy-authorization',
]);

/**
 * Why the `channel.header` lines cannot be sent, as [message, index of the line], or undefined
 * when they can: each must be one `Name: value` line (no line breaks or other control characters,
 * which would otherwise be stored and then fail every delivery), not a header the server sets.
 */
export function headerRefusal(headers: readonly unknown[] | undefined): [string, number] | undefined {
  if (!headers) return undefined;
  if (headers.length > MAX_CHANNEL_HEADERS) return [`channel.header has ${headers.length} lines; at most ${MAX_CHANNEL_HEADERS} are allowed`, MAX_CHANNEL_HEADERS];
  for (let n = 0; n < headers.length; n++) {
    const line = headers[n];
    if (typeof line !== 'string' || line.length > MAX_CHANNEL_HEADER_LENGTH) return [`channel.header[${n}] must be a text of at most ${MAX_CHANNEL_HEADER_LENGTH} characters`, n];
    const m = HEADER_LINE.exec(line);
    if (!m) return [`channel.header[${n}] must be one 'Name: value' line: a header name (letters, digits and !#$%&'*+.^_\`|~-) and a value without line breaks or control characters`, n];
    if (RESERVED_HEADERS.has(m[1].toLowerCase())) return [`channel.header[${n}] may not set ${m[1]}: the server sets it (or the HTTP connection owns it)`, n];
  }
  return undefined;
}

/**
 * A stored `channel.header` line as [name, value] for a delivery, or undefined for a line the
 * write check refuses (one stored before that check existed is left out, not sent).
 */
export function channelHeader(line: string): [string, string] | undefined {
  const m = line.length <= MAX_CHANNEL_HEADER_LENGTH ? HEADER_LINE.exec(line) : null;
  return m && !RESERVED_HEADERS.has(m[1].toLowerCase()) ? [m[1], m[2].trim()] : undefined;
}
