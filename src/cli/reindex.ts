import 'reflect-metadata';
import type { Resource } from '@medplum/fhirtypes';
import { DataSource } from 'typeorm';
import { loadAppConfig } from '../config/app.config';
import { dataSourceOptions } from '../database/data-source.options';
import { resolveDatabaseUrl, stopEmbeddedDatabase } from '../database/database.module';
import { FhirDefinitions } from '../fhir/definitions/fhir-definitions';
import { SearchIndexWriter } from '../fhir/search/search-index.writer';

const BATCH = Number(process.env.REINDEX_BATCH ?? 500);

/**
 * `npm run reindex [Type ...]`: rebuilds the search index rows of current resources (all types, or
 * those named), in batches of REINDEX_BATCH with one transaction each, printing progress. Safe to
 * run while the server serves: each resource's rows are replaced atomically.
 */
async function main(types: string[]): Promise<void> {
  const config = loadAppConfig();
  FhirDefinitions.get();
  const ds = new DataSource(dataSourceOptions(await resolveDatabaseUrl(config), 2));
  await ds.initialize();
  const writer = new SearchIndexWriter(config);
  try {
    const [{ n }] = await ds.query(
      `SELECT count(*)::int AS n FROM resource WHERE NOT deleted AND ($1::text[] IS NULL OR resource_type = ANY($1))`,
      [types.length ? types : null],
    );
    let done = 0;
    let after: [string, string] = ['', ''];
    const started = Date.now();
    for (;;) {
      const rows: { resource_type: string; id: string; content: Resource }[] = await ds.query(
        `SELECT resource_type, id, content FROM resource
          WHERE NOT deleted AND (resource_type, id) > ($1, $2) AND ($3::text[] IS NULL OR resource_type = ANY($3))
          ORDER BY resource_type, id LIMIT $4`,
        [after[0], after[1], types.length ? types : null, BATCH],
      );
      if (!rows.length) break;
      await ds.transaction(async (tx) => {
        for (const row of rows) await writer.index(tx, row.resource_type, row.id, row.content, true);
      });
      done += rows.length;
      after = [rows[rows.length - 1].resource_type, rows[rows.length - 1].id];
      const rate = Math.round(done / Math.max((Date.now() - started) / 1000, 0.001));
      process.stdout.write(`reindexed ${done}/${n} (${rate}/s)\n`);
    }
    process.stdout.write(`done: ${done} resources in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
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
