import { Global, Logger, Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { DataSource, DataSourceOptions } from 'typeorm';
import { APP_CONFIG, AppConfig } from '../config/app.config';
import { dataSourceOptions } from './data-source.options';
import { EmbeddedPostgresHandle, startEmbeddedPostgres } from './embedded-postgres';

// The embedded cluster is a child process of this one; main.ts stops it after the pool has closed.
let embedded: EmbeddedPostgresHandle | undefined;

export interface DatabaseUrls {
  /** The app's runtime connection. */
  url: string;
  /** The schema owner's connection, for migrations; the same as `url` with a single DATABASE_URL. */
  migrationUrl: string;
}

/** DATABASE_URL (and DATABASE_MIGRATION_URL), or the embedded cluster, started on first use. */
export async function resolveDatabaseUrls(config: AppConfig): Promise<DatabaseUrls> {
  if (config.databaseUrl) return { url: config.databaseUrl, migrationUrl: config.databaseMigrationUrl ?? config.databaseUrl };
  if (!embedded) {
    const logger = new Logger('Database');
    embedded = await startEmbeddedPostgres(config.embeddedPgDir, config.embeddedPgPort, (m) => logger.log(m));
  }
  return { url: embedded.url, migrationUrl: embedded.migrationUrl };
}

export async function stopEmbeddedDatabase(): Promise<void> {
  const handle = embedded;
  embedded = undefined;
  if (handle) await handle.stop();
}

/** Applies pending migrations over the owner's connection; answers the names applied. */
export async function applyMigrations(migrationUrl: string): Promise<string[]> {
  const ds = new DataSource({ ...dataSourceOptions(migrationUrl, 1), migrationsRun: false });
  await ds.initialize();
  try {
    return (await ds.runMigrations({ transaction: 'each' })).map((m) => m.name);
  } finally {
    await ds.destroy();
  }
}

/**
 * Options of the app's DataSource. Migrations are applied first over the owner's connection (the
 * app's own role cannot change the schema) and without a statement timeout (building an index on a
 * large table may take longer than any request should); the app's connections then carry the
 * statement timeout and never run migrations.
 */
export async function runtimeDataSourceOptions(config: AppConfig, poolSize: number, statementTimeoutMs = 0): Promise<DataSourceOptions> {
  const { url, migrationUrl } = await resolveDatabaseUrls(config);
  await applyMigrations(migrationUrl);
  return { ...dataSourceOptions(url, poolSize, statementTimeoutMs), migrationsRun: false };
}

@Global()
@Module({
  imports: [
    TypeOrmModule.forRootAsync({
      inject: [APP_CONFIG],
      useFactory: (config: AppConfig) => runtimeDataSourceOptions(config, config.dbPoolSize, config.dbStatementTimeoutMs),
    }),
  ],
})
export class DatabaseModule {}
