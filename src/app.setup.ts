import type { INestApplication } from '@nestjs/common';
import type { NestExpressApplication } from '@nestjs/platform-express';
import type { Server } from 'node:http';
import compression from 'compression';
import type { NextFunction, Request, Response } from 'express';
import helmet from 'helmet';
import { Logger } from 'nestjs-pino';
import { APP_CONFIG, AppConfig } from './config/app.config';
import { COMPRESSION_THRESHOLD_BYTES } from './common/http/one-shot-compression';
import { handleClientErrors } from './audit/client-error.handler';
import { AuditStage } from './fhir/pipeline/pipeline.stages';

const LIVENESS_BODY = JSON.stringify({ status: 'ok', info: {}, error: {}, details: {} });
/**
 * Node refuses a request whose header section exceeds its maxHeaderSize (default 16 KiB) with a
 * bare 431 the app never sees. Raised, so that the app itself answers a URL over
 * MAX_URL_LENGTH (FhirHttpMiddleware) with an audited OperationOutcome; beyond this, the
 * server's clientError handler (below) answers.
 */
export const MAX_HEADER_BYTES = 64 * 1024;
/** CORS preflight results a browser may reuse (Chromium caps it at 2 h); short, so a changed CORS_ORIGINS applies soon. */
const CORS_MAX_AGE_SECONDS = 600;

/**
 * HTTP-level set-up shared by main.ts and the e2e tests, so tests run the real stack. Guards,
 * filters and pipes are APP_* providers in the modules, not added here.
 */
export function configureApp(app: INestApplication): void {
  const express = app as NestExpressApplication;
  express.useLogger(app.get(Logger));
  express.use(helmet());
  express.disable('x-powered-by');
  const config = app.get<AppConfig>(APP_CONFIG);
  const server = app.getHttpServer() as Server;
  // Read by Node for each new connection's parser (as `http.createServer({ maxHeaderSize })` sets it).
  (server as Server & { maxHeaderSize?: number }).maxHeaderSize = MAX_HEADER_BYTES;
  handleClientErrors(server, app.get(AuditStage, { strict: false }), MAX_HEADER_BYTES);
  // Patient data must not stay in browser or proxy caches (docs/security.md); the CapabilityStatement
  // and the discovery documents hold none and may be cached.
  const cacheable = new Set([`${config.fhirBasePath}/metadata`, '/.well-known/smart-configuration', `${config.fhirBasePath}/.well-known/smart-configuration`, '/.well-known/jwks.json']);
  express.use((req: Request, res: Response, next: NextFunction) => {
    if (cacheable.has(req.path)) {
      res.setHeader('Cache-Control', 'public, max-age=300');
    } else {
      res.setHeader('Cache-Control', 'no-store');
      res.setHeader('Pragma', 'no-cache'); // HTTP/1.0 caches
    }
    next();
  });
  // gzip or br as the client accepts, for bodies of 1 KiB or more (a 3 MB search page shrinks
  // about tenfold). FHIR bodies up to 256 KiB arrive already compressed in one call (sendText,
  // one-shot-compression.ts) and pass through; larger pages and NDJSON exports stream through
  // the compressor; event streams are never buffered by one.
  const compress = compression({
    threshold: COMPRESSION_THRESHOLD_BYTES,
    filter: (req, res) => {
      const type = String(res.getHeader('Content-Type') ?? '');
      if (type.startsWith('text/event-stream')) return false;
      return type.startsWith('application/fhir+ndjson') || compression.filter(req, res);
    },
  });
  // A client that accepts no encoding (benchmarks, server-to-server tools) skips the middleware's
  // per-response hooks entirely.
  express.use((req: Request, res: Response, next: NextFunction) => (req.headers['accept-encoding'] ? compress(req, res, next) : next()));
  // Liveness (`GET /healthz`): answered here, after the security headers and before the request
  // log, guards and Nest's router: load balancers probe it several times a second and it says
  // only that the process answers (issue 11: 3.4 ms through the framework). Same body as the
  // terminus check; `/readyz` (database, migrations) stays in HealthController.
  express.getHttpAdapter().getInstance().get('/healthz', (_req: unknown, res: { type(t: string): { send(b: string): void } }) => {
    res.type('application/json').send(LIVENESS_BODY);
  });
  // Query strings stay flat (`a=1&a=2` -> array), as FHIR search expects; no nested objects.
  express.set('query parser', 'simple');
  express.set('etag', false);
  // Behind a load balancer, per-address limits need the client's address from X-Forwarded-For,
  // believed only from the proxies TRUST_PROXY names.
  express.set('trust proxy', config.trustProxy);
  // CORS is off unless CORS_ORIGINS lists the browser origins allowed to call the API. Browser code
  // reads versions, locations and progress from the exposed headers and sends conditional reads.
  if (config.corsOrigins.length) {
    express.enableCors({
      origin: config.corsOrigins,
      allowedHeaders: ['Authorization', 'Content-Type', 'Prefer', 'If-Match', 'If-None-Exist', 'If-None-Match', 'If-Modified-Since', 'X-Break-Glass-Reason'],
      exposedHeaders: ['ETag', 'Location', 'Content-Location', 'Last-Modified', 'X-Progress', 'X-Request-Id', 'Retry-After'],
      maxAge: CORS_MAX_AGE_SECONDS,
    });
  }
}
