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
 * The real application (all modules, guards, filters) on the test database, as main.ts builds it.
 * `imports`: test-only modules plugged in beside it (e.g. one registering a write policy, a listener
 * or a job queue), as an array or `{ imports }`.
 */
export async function createTestApp(opts: NonNullable<ModuleMetadata['imports']> | { imports?: ModuleMetadata['imports'] } = []): Promise<TestApp> {
  const imports = Array.isArray(opts) ? opts : (opts.imports ?? []);
  const moduleRef = await Test.createTestingModule({ imports: [AppModule, ...imports] }).compile();
  const app = moduleRef.createNestApplication({ bodyParser: false, bufferLogs: true });
  configureApp(app);
  try {
    await app.init();
  } catch (err) {
    // A start that fails part-way (a module's check in onApplicationBootstrap) has already started
    // what earlier hooks start (the job queue's pollers): close them, or they poll on after the
    // file's tests and keep its jest worker from exiting (main.ts exits the process instead).
    await app.close().catch(() => undefined);
    throw err;
  }
  const partial = { app, http: app.getHttpServer(), db: app.get<DataSource>(getDataSourceToken()), close: () => app.close() };
  const { hospitalAgent } = await import('./auth');
  return { ...partial, api: await hospitalAgent(partial as TestApp) };
}
