import 'reflect-metadata';
import { DataSource } from 'typeorm';
import { loadAppConfig } from '../config/app.config';
import { runtimeDataSourceOptions, stopEmbeddedDatabase } from '../database/database.module';
import { FhirDefinitions } from '../fhir/definitions/fhir-definitions';
import { buildCustomSearchParams, loadShippedSearchParameters, loadStoredSearchParameters } from '../fhir/search/custom-search-parameters';
import { SearchIndexWriter } from '../fhir/search/search-index.writer';
import { setCustomSearchParams } from '../fhir/search/search-parameter.registry';
import { DEFAULT_REINDEX_BATCH, SearchReindexer } from '../fhir/search/search-reindexer';

const BATCH = Number(process.env.REINDEX_BATCH ?? DEFAULT_REINDEX_BATCH);

/**
 * `npm run reindex [Type ...]`: rebuilds the search index rows of current resources (all types, or
 * those named) for every parameter in force (R4, fhir-profiles/, stored SearchParameters), in
 * batches of REINDEX_BATCH with one transaction each, printing progress. Safe to run while the
 * server serves (see SearchReindexer). The same code serves the `$reindex` operation.
 */
async function main(types: string[]): Promise<void> {
  const config = loadAppConfig();
  const defs = FhirDefinitions.get();
  const unknown = types.filter((t) => !defs.isStorable(t));
  if (unknown.length) throw new Error(`unknown resource type(s): ${unknown.join(', ')}`);
  const ds = new DataSource(await runtimeDataSourceOptions(config, 2));
  await ds.initialize();
  try {
    setCustomSearchParams(
      buildCustomSearchParams(loadShippedSearchParameters(), await loadStoredSearchParameters(ds), (sp, problem) =>
        process.stderr.write(`skipping SearchParameter ${sp.id ?? sp.url ?? sp.code}: ${problem.message}\n`),
      ),
    );
    const reindexer = new SearchReindexer(ds, new SearchIndexWriter(config));
    const total = await reindexer.count(types);
    const started = Date.now();
    const { processed } = await reindexer.run({
      types,
      batchSize: BATCH,
      onBatch: ({ processed: done, last }) => {
        const rate = Math.round(done / Math.max((Date.now() - started) / 1000, 0.001));
        process.stdout.write(`reindexed ${done}/${total} (${rate}/s, at ${last.resourceType})\n`);
      },
    });
    process.stdout.write(`done: ${processed} resources in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  } finally {
    await ds.destroy();
  }
}

main(process.argv.slice(2))
  .then(() => stopEmbeddedDatabase())
  .catch(async (err: unknown) => {
    process.stderr.write(`reindex failed: ${err instanceof Error ? err.message : String(err)}\n`);
    await stopEmbeddedDatabase().catch(() => undefined);
    process.exit(1);
  });
