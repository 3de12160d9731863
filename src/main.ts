import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { APP_CONFIG, AppConfig, ConfigurationError, loadAppConfig } from './config/app.config';
import { StartupError } from './common/startup-error';
import { resolveDatabaseUrls, stopEmbeddedDatabase } from './database/database.module';

async function bootstrap(): Promise<void> {
  try {
    // The embedded cluster starts before Nest, so a locked data directory or a taken port ends the
    // process with what to do, not with Nest's "ExceptionHandler undefined".
    await resolveDatabaseUrls(loadAppConfig());
  } catch (err) {
    if (err instanceof ConfigurationError || err instanceof StartupError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(err instanceof StartupError ? err.exitCode : 78); // EX_CONFIG
    }
    throw err;
  }
  // Loaded only after the environment is known to be valid: the module reads it when defined.
  const { AppModule } = await import('./app.module');
  const { configureApp } = await import('./app.setup');
  // Bodies are parsed per route by FhirHttpMiddleware (JSON only, size-limited, errors as OperationOutcome).
  // abortOnError off: a failure while starting reaches the handler below, which says what it was.
  const app = await NestFactory.create(AppModule, { bodyParser: false, bufferLogs: true, abortOnError: false });
  configureApp(app);
  const config = app.get<AppConfig>(APP_CONFIG);

  let stopping = false;
  const shutdown = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`received ${signal}, shutting down\n`);
    // Stop accepting requests, finish in-flight ones, close the pool, then stop embedded Postgres.
    await app.close();
    await stopEmbeddedDatabase();
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));

  await app.listen(config.port);
  process.stderr.write(`FHIR server listening on ${config.publicBaseUrl}${config.fhirBasePath}\n`);
}

void bootstrap().catch(async (err: unknown) => {
  process.stderr.write(`startup failed: ${err instanceof Error ? err.message : String(err)}\n`);
  await stopEmbeddedDatabase().catch(() => undefined);
  // A configuration problem found only at start (a wrong HIE_KEY_ENCRYPTION_KEY) exits like a bad variable.
  process.exit(err instanceof ConfigurationError ? 78 : 1);
});
