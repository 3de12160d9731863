import { Global, Logger, Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { APP_CONFIG, AppConfig } from '../config/app.config';
import { DataSource } from 'typeorm';
import { dataSourceOptions, runMigrations } from './data-source.options';
import { EmbeddedPostgresHandle, startEmbeddedPostgres } from './embedded-postgres';

// The embedded cluster is a child process of this one; main.ts stops it after the pool has closed.
let embedded: EmbeddedPostgresHandle | undefined;

export async function resolveDatabaseUrl(config: AppConfig): Promise<string> {
  if (config.databaseUrl) return config.databaseUrl;
  if (!embedded) {
    const logger = new Logger('Database');
    embedded = await startEmbeddedPostgres(config.embeddedPgDir, config.embeddedPgPort, (m) => logger.log(m));
  }
  return embedded.url;
}

export async function stopEmbeddedDatabase(): Promise<void> {
  const handle = embedded;
  embedded = undefined;
  if (handle) await handle.stop();
}

@Global()
@Module({
  imports: [
    TypeOrmModule.forRootAsync({
      inject: [APP_CONFIG],
      useFactory: async (config: AppConfig) =>
        dataSourceOptions(await resolveDatabaseUrl(config), config.dbPoolSize, config.dbStatementTimeoutMs),
      // With a statement timeout, migrations run after start-up on a connection without it.
      dataSourceFactory: async (options) => {
        const ds = await new DataSource(options!).initialize();
        if (!options!.migrationsRun) await runMigrations(ds);
        return ds;
      },
    }),
  ],
})
export class DatabaseModule {}
