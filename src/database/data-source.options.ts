import { join } from 'node:path';
import { types } from 'pg';
import type { DataSourceOptions } from 'typeorm';
import { parseJsonKeepingDecimals } from '../common/fhir-json';
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

// jsonb keeps a decimal's scale (`1.50`); reading it as a JS number would not (common/fhir-json.ts).
types.setTypeParser(types.builtins.JSONB, parseJsonKeepingDecimals);

/**
 * `statementTimeoutMs` (the server's connections only) makes PostgreSQL cancel any statement that
 * runs longer; migrations run on a connection without it (see runtimeDataSourceOptions).
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
    // A connection that cannot be had in 30 s (server away, network hung) fails instead of hanging
    // the request; the filter answers it with 503.
    extra: {
      max: poolSize,
      application_name: 'fhir-hie',
      connectionTimeoutMillis: 30_000,
      ...(statementTimeoutMs > 0 ? { statement_timeout: statementTimeoutMs } : {}),
    },
  };
}
