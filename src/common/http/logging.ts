import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Options } from 'pino-http';
import type { AppConfig } from '../../config/app.config';
import { requestIdOf } from './request-id';

type RoutedRequest = IncomingMessage & { id?: unknown; routeTemplate?: string };

/**
 * Access log: request id, method, route TEMPLATE, status, duration. Never the URL with its query
 * (search values are PHI), never headers or bodies.
 */
export function pinoHttpOptions(config: AppConfig): Options {
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
      const route = (req as RoutedRequest).routeTemplate;
      return route ? { route } : {};
    },
    customSuccessMessage: (_req: IncomingMessage, res: ServerResponse) => `request completed ${res.statusCode}`,
    customErrorMessage: (_req: IncomingMessage, res: ServerResponse) => `request failed ${res.statusCode}`,
    redact: { paths: ['req.headers', 'req.url', 'req.query', 'req.params'], remove: true },
  };
}
