import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import { createServer, IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { NestFactory } from '@nestjs/core';
import type { AppConfig } from '../src/config/app.config';
import type { QueryParams, InteractionKind } from '../src/fhir/pipeline/interaction';

/** The product's own build (`dist/`, as `npm start` runs it), not this bench's copy of the sources: the same files and paths. */
function product<T>(path: string): T {
  return require(join(process.cwd(), 'dist', path)) as T;
}
const { FhirError } = product<typeof import('../src/common/fhir-error')>('common/fhir-error.js');
const { COMPRESSION_THRESHOLD_BYTES } = product<typeof import('../src/common/http/one-shot-compression')>('common/http/one-shot-compression.js');
const { APP_CONFIG, loadAppConfig } = product<typeof import('../src/config/app.config')>('config/app.config.js');
const { resolveDatabaseUrls, stopEmbeddedDatabase } = product<typeof import('../src/database/database.module')>('database/database.module.js');

/**
 * Bench only (issue 23's bound): the server of `dist/main.js` (the full HTTP stack on PORT) and, in
 * the same process on DIRECT_PORT, the same app's FHIR pipeline behind a bare `node:http` handler
 * with no Express, Nest router, guards, interceptors, helmet, compression middleware, request log
 * or rate limit. It serves what bench:crud's mix sends (read by id, search on a type, create) and
 * does, per request, what the guarantees need: the bearer token verified (AccessTokenService: the
 * signature and the client's status), the pipeline's authorization, consent, execution and audit
 * record committed before the answer (the pipeline is the same object the REST controller calls),
 * JSON out (gzip in one call above 1 KiB, as the server's one-shot path). A read through it is what
 * this project's code, its driver and Node's HTTP server cost without a framework: the lower bound
 * for any HTTP framework in front of this code. Never used by the product.
 */
async function bootstrap(): Promise<void> {
  await resolveDatabaseUrls(loadAppConfig());
  // Loaded once the environment is resolved, as main.ts loads the app module.
  const { AccessTokenService } = product<typeof import('../src/auth/access-token.service')>('auth/access-token.service.js');
  const { parseJsonKeepingDecimals } = product<typeof import('../src/common/fhir-json')>('common/fhir-json.js');
  const { RequestContext } = product<typeof import('../src/common/request-context')>('common/request-context.js');
  const { buildInteraction } = product<typeof import('../src/fhir/pipeline/interaction')>('fhir/pipeline/interaction.js');
  const { checkTarget } = product<typeof import('../src/fhir/pipeline/interaction.parser')>('fhir/pipeline/interaction.parser.js');
  const { FhirPipeline } = product<typeof import('../src/pipeline/fhir-pipeline.service')>('pipeline/fhir-pipeline.service.js');
  const { AppModule } = product<typeof import('../src/app.module')>('app.module.js');
  const { configureApp } = product<typeof import('../src/app.setup')>('app.setup.js');
  const app = await NestFactory.create(AppModule, { bodyParser: false, bufferLogs: true, abortOnError: false });
  configureApp(app);
  const config = app.get<AppConfig>(APP_CONFIG);
  const tokens = app.get(AccessTokenService);
  const pipeline = app.get(FhirPipeline);
  const base = `${config.fhirBasePath}/`;

  const direct = createServer((req, res) => {
    void RequestContext.run({ requestId: randomUUID() }, () => handle(req, res)).catch((err: unknown) => {
      const fhir = err instanceof FhirError ? err : undefined;
      if (!fhir) process.stderr.write(`direct: ${err instanceof Error ? err.message : String(err)}\n`);
      send(req, res, fhir?.status ?? 500, { resourceType: 'OperationOutcome', issue: fhir?.issues ?? [{ severity: 'error', code: 'exception' }] });
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const authorization = req.headers.authorization;
    if (!authorization?.startsWith('Bearer ')) throw new FhirError(401, 'login', 'bearer token required');
    const principal = await tokens.verify(authorization.slice(7)).catch(() => {
      throw new FhirError(401, 'login', 'invalid token');
    });
    const url = new URL(req.url ?? '/', 'http://direct');
    if (!url.pathname.startsWith(base)) throw new FhirError(404, 'not-found', 'not under the FHIR base');
    const path = url.pathname.slice(base.length - 1);
    const [resourceType, id, ...rest] = path.slice(1).split('/');
    let kind: InteractionKind;
    if (req.method === 'GET' && id !== undefined && !rest.length) kind = 'read';
    else if (req.method === 'GET' && id === undefined) kind = 'search-type';
    else if (req.method === 'POST' && id === undefined) kind = 'create';
    else throw new FhirError(405, 'not-supported', 'the direct bench server serves read, search-type and create');
    checkTarget({ resourceType, id });
    const query: QueryParams = {};
    for (const [k, v] of url.searchParams) {
      const prev = query[k];
      query[k] = prev === undefined ? v : [...(Array.isArray(prev) ? prev : [prev]), v];
    }
    const body = kind === 'create' ? parseJsonKeepingDecimals(await readBody(req)) : undefined;
    const interaction = buildInteraction(kind, { resourceType, id, method: req.method === 'GET' ? 'GET' : 'POST', body, query, path });
    const gone = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) gone.abort();
    });
    const result = await pipeline.handle(principal, interaction, { signal: gone.signal, address: req.socket.remoteAddress });
    if (result.versionId) res.setHeader('ETag', `W/"${result.versionId}"`);
    if (result.lastUpdated) res.setHeader('Last-Modified', new Date(result.lastUpdated).toUTCString());
    if (result.location && result.status === 201) res.setHeader('Location', result.location);
    send(req, res, result.status, result.resource);
  }

  await app.listen(config.port);
  const directPort = Number(process.env.DIRECT_PORT);
  await new Promise<void>((resolve) => direct.listen(directPort, '127.0.0.1', resolve));
  const shutdown = async (): Promise<void> => {
    direct.close();
    await app.close();
    await stopEmbeddedDatabase();
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown());
  process.once('SIGINT', () => void shutdown());
  process.stderr.write(`direct pipeline listening on 127.0.0.1:${directPort}\nFHIR server listening on ${config.publicBaseUrl}${config.fhirBasePath}\n`);
}

function send(req: IncomingMessage, res: ServerResponse, status: number, resource: object | undefined): void {
  if (!resource) {
    res.writeHead(status).end();
    return;
  }
  const text = JSON.stringify(resource);
  const gzip = text.length >= COMPRESSION_THRESHOLD_BYTES && /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
  res.writeHead(status, { 'Content-Type': 'application/fhir+json; charset=utf-8', 'Cache-Control': 'no-store', ...(gzip ? { 'Content-Encoding': 'gzip' } : {}) });
  res.end(gzip ? gzipSync(text) : text);
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

void bootstrap().catch(async (err: unknown) => {
  process.stderr.write(`startup failed: ${err instanceof Error ? err.message : String(err)}\n`);
  await stopEmbeddedDatabase().catch(() => undefined);
  process.exit(1);
});
