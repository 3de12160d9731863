import './bench-env';
import { cpus, totalmem } from 'node:os';
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { DataSource } from 'typeorm';
import { getDataSourceToken } from '@nestjs/typeorm';
import { AppModule } from '../src/app.module';
import { configureApp } from '../src/app.setup';
import { ClientRegistrationRepository } from '../src/auth/client-registration.repository';
import { stopEmbeddedDatabase } from '../src/database/database.module';

export interface BenchServer {
  app: INestApplication;
  db: DataSource;
  baseUrl: string;
  token: string;
  /** A fresh token (tokens live at most an hour; long loads renew). */
  newToken(): Promise<string>;
  /** A token of a hospital client of another organization (purpose TREAT): consent is evaluated for its reads. */
  tokenFor(organization: string): Promise<string>;
  close(): Promise<void>;
}

/**
 * The real server, in this process, on a fresh embedded PostgreSQL in a temp directory (or on
 * DATABASE_URL), listening on a loopback port, with a hospital client's token.
 */
export async function startBenchServer(options: { persistentPgDir?: string } = {}): Promise<BenchServer> {
  linkProjectAssets();
  /** The temp directory of a fresh cluster made here: removed by close(). */
  let scratchDir: string | undefined;
  process.env.LOG_LEVEL ??= 'warn';
  process.env.RATE_LIMIT_PER_MINUTE ??= '1000000';
  process.env.ACCESS_TOKEN_TTL_SECONDS ??= '3600';
  if (!process.env.DATABASE_URL && options.persistentPgDir) {
    // A cluster kept between runs: expensive data sets are loaded once.
    process.env.EMBEDDED_PG_DIR = options.persistentPgDir;
    process.env.EMBEDDED_PG_PORT ??= '56990';
  } else if (!process.env.DATABASE_URL) {
    const dir = mkdtempSync(join(tmpdir(), 'hie-bench-'));
    scratchDir = dir;
    chmodSync(dir, 0o755);
    process.env.EMBEDDED_PG_DIR = join(dir, 'pg');
    process.env.EMBEDDED_PG_PORT ??= String(56000 + Math.floor(Math.random() * 1000));
  }
  const app = await NestFactory.create(AppModule, { bodyParser: false, logger: ['error', 'warn'] });
  configureApp(app);
  await app.listen(0, '127.0.0.1');
  const address = app.getHttpServer().address() as { port: number };
  const baseUrl = `http://127.0.0.1:${address.port}`;
  const clients = app.get(ClientRegistrationRepository);
  const tokenFor = async (organization: string): Promise<string> => {
    // Unique per run: a persistent database keeps the clients of earlier runs.
    const clientId = `bench-hospital-${organization}-${Date.now()}`;
    const { secret } = await clients.create({
      clientId,
      name: 'bench',
      organization,
      role: 'hospital',
      scopes: ['system/*.*'],
      purposes: ['TREAT'],
      withSecret: true,
    });
    const tokenRes = await fetch(`${baseUrl}/oauth2/token`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', client_id: clientId, client_secret: secret!, scope: 'system/*.*' }),
    });
    return ((await tokenRes.json()) as { access_token: string }).access_token;
  };
  const newToken = (): Promise<string> => tokenFor('org-bench');
  const token = await newToken();
  return {
    newToken,
    tokenFor,
    app,
    db: app.get<DataSource>(getDataSourceToken()),
    baseUrl,
    token,
    close: async () => {
      await app.close();
      await stopEmbeddedDatabase();
      // A fresh cluster of a full Synthea load is ~2 GB: left behind, a day of runs filled the disk.
      if (scratchDir) rmSync(scratchDir, { recursive: true, force: true });
    },
  };
}

/**
 * The compiled bench lives one level deeper (dist-bench/src/...) than dist/, so code that finds
 * fhir-profiles/ and config/ three levels above its own folder looks in dist-bench/: link them there.
 */
function linkProjectAssets(): void {
  const compiledRoot = join(__dirname, '..');
  if (!__filename.endsWith('.js') || !existsSync(join(compiledRoot, 'src'))) return;
  for (const folder of ['fhir-profiles', 'config']) {
    const link = join(compiledRoot, folder);
    if (!existsSync(link)) symlinkSync(join(compiledRoot, '..', folder), link, 'dir');
  }
}

export async function machineInfo(db: DataSource): Promise<Record<string, unknown>> {
  const [{ version }] = await db.query('SELECT version()');
  return {
    date: new Date().toISOString(),
    cores: cpus().length,
    cpu: cpus()[0]?.model,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    postgres: String(version).split(' on ')[0],
  };
}

export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** Writes bench/results/<name>.json and <name>.md. */
export function writeResults(name: string, json: unknown, markdown: string): void {
  // npm scripts run from the project root.
  const target = join(process.cwd(), 'bench', 'results');
  mkdirSync(target, { recursive: true });
  writeFileSync(join(target, `${name}.json`), `${JSON.stringify(json, null, 2)}\n`);
  writeFileSync(join(target, `${name}.md`), markdown);
  process.stdout.write(`${markdown}\nwritten to ${join(target, `${name}.md`)}\n`);
}

/** The built server (dist/main.js) as a child process, for benches that measure it from outside. */
export interface ServerProcess {
  child: ChildProcess;
  exited: Promise<unknown>;
  baseUrl: string;
}

/**
 * The V8 flags `npm start` and the Dockerfile run the server with (package.json `start`), so a
 * bench measures the server as it is deployed.
 */
export const SERVER_NODE_FLAGS = ['--max-semi-space-size=64'];

/** Starts dist/main.js (or `entry`, relative to the project) with `env` (PORT among it), the server's flags and `nodeFlags`; resolves once it listens, rejects if it exits first. */
export async function startServerProcess(env: Record<string, string>, nodeFlags: string[] = [], entry = join('dist', 'main.js')): Promise<ServerProcess> {
  const root = process.cwd();
  const child = spawn(process.execPath, [...SERVER_NODE_FLAGS, ...nodeFlags, join(root, entry)], { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  let err = '';
  await new Promise<void>((resolve, reject) => {
    child.stderr!.on('data', (chunk: Buffer) => {
      err += chunk.toString('utf8');
      if (err.includes('FHIR server listening')) resolve();
    });
    void exited.then(() => reject(new Error(`server exited during start: ${err.slice(-2000)}`)));
  });
  return { child, exited, baseUrl: `http://127.0.0.1:${env.PORT}` };
}

/** SIGTERM to a server still running, then waits for it to exit. */
export async function stopServerProcess(server: ServerProcess): Promise<void> {
  if (server.child.exitCode !== null || server.child.signalCode !== null) return;
  server.child.kill('SIGTERM');
  await server.exited;
}

const TICK_MS = 1000 / Number(execFileSync('getconf', ['CLK_TCK']).toString().trim() || 100);

/** CPU ms of a process (utime + stime), with `withChildren` also of the children it has reaped. */
export function processCpuMs(pid: number, withChildren = false): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is state (field 3): utime is field 14, stime 15, cutime 16, cstime 17.
    const ticks = Number(fields[11]) + Number(fields[12]) + (withChildren ? Number(fields[13]) + Number(fields[14]) : 0);
    return ticks * TICK_MS;
  } catch {
    return 0;
  }
}

/** The postmaster, its live children, and the children it has reaped (cutime/cstime). */
export function postgresCpuMs(postmaster: number): number {
  let total = processCpuMs(postmaster, true);
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === postmaster) total += processCpuMs(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return total;
}
