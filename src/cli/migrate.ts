import 'reflect-metadata';
import { DataSource } from 'typeorm';
import { loadAppConfig } from '../config/app.config';
import { dataSourceOptions } from '../database/data-source.options';
import { resolveDatabaseUrl, stopEmbeddedDatabase } from '../database/database.module';

/** `npm run migration:run`: applies pending migrations to DATABASE_URL (or the embedded database). */
async function main(): Promise<void> {
  const config = loadAppConfig();
  const ds = new DataSource({ ...dataSourceOptions(await resolveDatabaseUrl(config), 2), migrationsRun: false });
  await ds.initialize();
  try {
    const applied = await ds.runMigrations({ transaction: 'each' });
    process.stdout.write(`applied ${applied.length} migration(s)${applied.map((m) => `\n  ${m.name}`).join('')}\n`);
  } finally {
    await ds.destroy();
    await stopEmbeddedDatabase();
  }
}

main().catch(async (err: unknown) => {
  process.stderr.write(`migration failed: ${err instanceof Error ? err.message : String(err)}\n`);
  await stopEmbeddedDatabase().catch(() => undefined);
  process.exit(1);
});
