import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

const CLIENT_ID_RE = /^[A-Za-z0-9\-_.]{8,64}$/;

/** One id per request: a well-formed caller `X-Request-Id` is kept (for tracing across systems), else a UUID. */
export function requestIdOf(req: IncomingMessage & { id?: unknown }): string {
  if (typeof req.id === 'string') return req.id;
  const header = req.headers['x-request-id'];
  const id = typeof header === 'string' && CLIENT_ID_RE.test(header) ? header : randomUUID();
  req.id = id;
  return id;
}
