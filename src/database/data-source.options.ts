import { join } from 'node:path';
import { DataSource, DataSourceOptions, MigrationExecutor } from 'typeorm';
import { ResourceEntity, ResourceHistoryEntity } from '../fhir/storage/resource.entity';

/**
 * Migrations live in the top-level `migrations/` folder. Compiled, they sit in dist/migrations;
 * under ts-jest they are loaded as TypeScript from the source folder.
 */
function migrationsGlob(): string[] {
  if (__filename.endsWith('.ts')) return [join(__dirname, '..', '..', 'migrations', '*.ts')];
  // dist/ (the server) has them beside src output; dist-bench/ one level up.
  return [join(__dirname, '..', 'migrations', '*.js'), join(__dirname, '..', '..', 'migrations', '*.js')];
}

/**
 * `statementTimeoutMs` (the server's connections only) makes PostgreSQL cancel any statement that
 * runs longer; migrations then run on a connection without it (see runMigrations), and the CLI
 * tools (migrate, reindex, cli) pass none.
 */
export function dataSourceOptions(url: string, poolSize: number, statementTimeoutMs = 0): DataSourceOptions {
  return {
    type: 'postgres',
    url,
    entities: [ResourceEntity, ResourceHistoryEntity],
    migrations: migrationsGlob(),
    migrationsTableName: 'schema_migrations',
    migrationsRun: statementTimeoutMs === 0,
    // Each migration in its own transaction, so one that builds indexes CONCURRENTLY can opt out.
    migrationsTransactionMode: 'each',
    synchronize: false,
    logging: false,
    extra: { max: poolSize, application_name: 'fhir-hie', ...(statementTimeoutMs > 0 ? { statement_timeout: statementTimeoutMs } : {}) },
  };
}

/**
 * Applies pending migrations on one connection with the statement timeout lifted: building an
 * index on a large table may take longer than any request should.
 */
export async function runMigrations(ds: DataSource): Promise<void> {
  const queryRunner = ds.createQueryRunner();
  try {
    await queryRunner.query('SET statement_timeout = 0');
    const executor = new MigrationExecutor(ds, queryRunner);
    executor.transaction = ds.options.migrationsTransactionMode ?? 'each';
    await executor.executePendingMigrations();
  } finally {
    await queryRunner.query('RESET statement_timeout').catch(() => undefined);
    await queryRunner.release();
  }
}
