import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { AppModule } from '../app.module';
import { stopEmbeddedDatabase } from '../database/database.module';
import { FhirDefinitions } from '../fhir/definitions/fhir-definitions';
import { SystemAccess } from '../fhir/pipeline/system-access';
import { DEFAULT_REINDEX_BATCH, SearchReindexer } from '../fhir/search/search-reindexer';

const BATCH = Number(process.env.REINDEX_BATCH ?? DEFAULT_REINDEX_BATCH);

/**
 * `npm run reindex [Type ...]`: rebuilds the search index rows of current resources (all types, or
 * those named) for every parameter in force (R4, fhir-profiles/, stored SearchParameters), in
 * batches of REINDEX_BATCH with one transaction each, printing progress. Safe to run while the
 * server serves (see SearchReindexer). The same code serves the `$reindex` operation.
 */
async function main(types: string[]): Promise<void> {
  const defs = FhirDefinitions.get();
  const unknown = types.filter((t) => !defs.isStorable(t));
  if (unknown.length) throw new Error(`unknown resource type(s): ${unknown.join(', ')}`);
  // The application context loads the search parameters in force (R4, fhir-profiles/, stored ones)
  // and mints the audited system context the reindexer requires; no HTTP server is started.
  // Nest's own logs stay out of the output (secrets and progress only); failures are printed below.
  const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
  try {
    const ctx = await app.get(SystemAccess).mint('reindex-cli');
    const reindexer = app.get(SearchReindexer);
    const total = await reindexer.count(ctx, types);
    const started = Date.now();
    const { processed } = await reindexer.run(ctx, {
      types,
      batchSize: BATCH,
      onBatch: ({ processed: done, last }) => {
        const rate = Math.round(done / Math.max((Date.now() - started) / 1000, 0.001));
        process.stdout.write(`reindexed ${done}/${total} (${rate}/s, at ${last.resourceType})\n`);
      },
    });
    process.stdout.write(`done: ${processed} resources in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  } finally {
    await app.close();
  }
}

main(process.argv.slice(2))
  .then(() => stopEmbeddedDatabase())
  .catch(async (err: unknown) => {
    process.stderr.write(`reindex failed: ${err instanceof Error ? err.message : String(err)}\n`);
    await stopEmbeddedDatabase().catch(() => undefined);
    process.exit(1);
  });
