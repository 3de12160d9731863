import type { INestApplication } from '@nestjs/common';
import type { NestExpressApplication } from '@nestjs/platform-express';
import helmet from 'helmet';
import { Logger } from 'nestjs-pino';
import { APP_CONFIG, AppConfig } from './config/app.config';

const LIVENESS_BODY = JSON.stringify({ status: 'ok', info: {}, error: {}, details: {} });

/**
 * HTTP-level set-up shared by main.ts and the e2e tests, so tests run the real stack. Guards,
 * filters and pipes are APP_* providers in the modules, not added here.
 */
export function configureApp(app: INestApplication): void {
  const express = app as NestExpressApplication;
  express.useLogger(app.get(Logger));
  express.use(helmet());
  express.disable('x-powered-by');
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
  const { trustProxy } = app.get<AppConfig>(APP_CONFIG);
  express.set('trust proxy', trustProxy);
  // CORS is off unless CORS_ORIGINS lists the browser origins allowed to call the API.
  const { corsOrigins } = app.get<AppConfig>(APP_CONFIG);
  if (corsOrigins.length) {
    express.enableCors({ origin: corsOrigins, allowedHeaders: ['Authorization', 'Content-Type', 'Prefer', 'If-Match', 'If-None-Exist', 'X-Break-Glass-Reason'] });
  }
}
