import type { INestApplication, ModuleMetadata } from '@nestjs/common';
import request from 'supertest';
import { Test } from '@nestjs/testing';
import { getDataSourceToken } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { AppModule } from '../../src/app.module';
import { configureApp } from '../../src/app.setup';

export interface TestApp {
  app: INestApplication;
  http: ReturnType<INestApplication['getHttpServer']>;
  db: DataSource;
  /** Sends a bearer token of a hospital client (scopes system/*.*, purpose TREAT) on every request. */
  api: ReturnType<typeof request.agent>;
  close(): Promise<void>;
}

/**
 * The real application (all modules, guards, filters) on the test database, as main.ts builds it;
 * `imports` adds test-only modules beside it (a module that plugs into an extension point).
 */
export async function createTestApp(opts: { imports?: ModuleMetadata['imports'] } = {}): Promise<TestApp> {
  const moduleRef = await Test.createTestingModule({ imports: [AppModule, ...(opts.imports ?? [])] }).compile();
  const app = moduleRef.createNestApplication({ bodyParser: false, bufferLogs: true });
  configureApp(app);
  await app.init();
  const partial = { app, http: app.getHttpServer(), db: app.get<DataSource>(getDataSourceToken()), close: () => app.close() };
  const { hospitalAgent } = await import('./auth');
  return { ...partial, api: await hospitalAgent(partial as TestApp) };
}
