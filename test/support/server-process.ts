import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..');
/**
 * One level below the checkout, like dist/: the code finds config/ and fhir-profiles/ from there.
 * One directory per Jest worker process: files running in parallel compile, start and remove their
 * own (a shared dist-e2e/ was removed by one file's afterAll while another's server was starting).
 */
export const COMPILED_SERVER_DIR = join(ROOT, `dist-e2e-${process.pid}`);
const OUT = COMPILED_SERVER_DIR;

/**
 * Compiles the server as `npm run build` lays it out, without type-checking (see
 * compile-server.js), into this worker's dist-e2e-<pid>/: never a stale dist/. Answers the path of main.js.
 */
export function compileServer(): string {
  execFileSync(process.execPath, [join(__dirname, 'compile-server.js'), OUT], { stdio: 'inherit' });
  return join(OUT, 'main.js');
}

export function removeCompiledServer(): void {
  rmSync(OUT, { recursive: true, force: true });
}

export interface ServerProcess {
  child: ChildProcess;
  /** Everything the process wrote to stderr so far. */
  stderr(): string;
  /** Resolves with the exit code (or signal) when the process ends. */
  exited: Promise<number | string>;
  /** Resolves when stderr contains `text`; rejects when the process exits first or after `ms`. */
  waitFor(text: string | RegExp, ms: number): Promise<void>;
}

/** Runs the compiled server (`node main.js`) with `env` on top of a clean test environment. */
export function startServer(main: string, env: Record<string, string>): ServerProcess {
  const base = { ...process.env };
  delete base.DATABASE_URL;
  const child = spawn(process.execPath, [main], { cwd: ROOT, env: { ...base, LOG_LEVEL: 'info', NODE_ENV: 'test', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  const listeners = new Set<() => void>();
  child.stderr!.on('data', (chunk: Buffer) => {
    err += chunk.toString('utf8');
    for (const l of listeners) l();
  });
  child.stdout!.on('data', (chunk: Buffer) => {
    err += chunk.toString('utf8');
    for (const l of listeners) l();
  });
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  return {
    child,
    stderr: () => err,
    exited,
    waitFor(text, ms) {
      const seen = () => (typeof text === 'string' ? err.includes(text) : text.test(err));
      return new Promise<void>((resolve, reject) => {
        if (seen()) return resolve();
        const timer = setTimeout(() => finish(new Error(`timed out after ${ms} ms waiting for ${String(text)}; output:\n${err.slice(-3000)}`)), ms);
        const check = () => seen() && finish();
        const finish = (e?: Error) => {
          clearTimeout(timer);
          listeners.delete(check);
          if (e) reject(e);
          else resolve();
        };
        listeners.add(check);
        void exited.then((code) => finish(seen() ? undefined : new Error(`exited (${code}) before ${String(text)}; output:\n${err.slice(-3000)}`)));
      });
    },
  };
}
