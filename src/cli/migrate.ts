import 'reflect-metadata';
import { loadAppConfig } from '../config/app.config';
import { applyMigrations, resolveDatabaseUrls, stopEmbeddedDatabase } from '../database/database.module';

/**
 * `npm run migration:run`: applies pending migrations as the schema owner (DATABASE_MIGRATION_URL,
 * else DATABASE_URL, or the embedded database's superuser).
 */
async function main(): Promise<void> {
  const config = loadAppConfig();
  try {
    const applied = await applyMigrations((await resolveDatabaseUrls(config)).migrationUrl);
    process.stdout.write(`applied ${applied.length} migration(s)${applied.map((m) => `\n  ${m}`).join('')}\n`);
  } finally {
    await stopEmbeddedDatabase();
  }
}

main().catch(async (err: unknown) => {
  process.stderr.write(`migration failed: ${err instanceof Error ? err.message : String(err)}\n`);
  await stopEmbeddedDatabase().catch(() => undefined);
  process.exit(1);
});
