/**
 * `Authorization: Basic` credentials of the token endpoint (client_secret_basic). RFC 6749 §2.3.1:
 * client id and secret are form-urlencoded inside them, so a client can send broken
 * percent-encoding: that is `malformed` (refused as invalid_client), never an exception.
 */
export type BasicCredentials = { clientId: string; secret: string } | { malformed: true; rawClientId: string };

export function parseBasicCredentials(header: string | undefined): BasicCredentials | undefined {
  const m = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(header ?? '');
  if (!m) return undefined;
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  const rawClientId = decoded.slice(0, colon);
  try {
    return { clientId: decodeURIComponent(rawClientId), secret: decodeURIComponent(decoded.slice(colon + 1)) };
  } catch {
    return { malformed: true, rawClientId };
  }
}
