import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Options } from 'pino-http';
import { requestIdOf } from './request-id';

/** A request's audit fields for its access log line, taken once (bound to LogAuditStage's in AppModule). */
export type RequestFields = (requestId: unknown) => Record<string, unknown> | undefined;

type RoutedRequest = IncomingMessage & { id?: unknown; routeTemplate?: string };

/** Requests whose start pino-http has seen (customProps runs at the start and at the end). */
const started = new WeakSet<IncomingMessage>();

/**
 * Access log, ONE line per request: request id, method, route TEMPLATE, status, duration, and the
 * request's audit fields (client, organization, interaction, outcome, counts; LogAuditStage). Never
 * the URL with its query (search values are PHI), never headers or bodies, nor patient ids.
 */
export function pinoHttpOptions(config: { logLevel: string }, requestFields: RequestFields = () => undefined): Options {
  return {
    level: config.logLevel,
    genReqId: (req) => requestIdOf(req as RoutedRequest),
    quietReqLogger: true,
    customAttributeKeys: { responseTime: 'durationMs' },
    serializers: {
      req: (req: { id?: unknown; method?: string }) => ({ id: req.id, method: req.method }),
      res: (res: { statusCode?: number }) => ({ status: res.statusCode }),
      err: (err: Error) => ({ type: err?.constructor?.name }),
    },
    // Evaluated when the response finishes, after routing has named the route.
    customProps: (req: IncomingMessage) => {
      if (!started.has(req)) {
        started.add(req);
        return {};
      }
      const route = (req as RoutedRequest).routeTemplate;
      return { ...(route ? { route } : {}), ...requestFields((req as RoutedRequest).id) };
    },
    customSuccessMessage: (_req: IncomingMessage, res: ServerResponse) => `request completed ${res.statusCode}`,
    customErrorMessage: (_req: IncomingMessage, res: ServerResponse) => `request failed ${res.statusCode}`,
    redact: { paths: ['req.headers', 'req.url', 'req.query', 'req.params'], remove: true },
  };
}
