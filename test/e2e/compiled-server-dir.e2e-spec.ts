import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { compileServer, COMPILED_SERVER_DIR, removeCompiledServer } from '../support/server-process';

/**
 * The compiled server of the kill -9 and restart files (test/support/server-process.ts): Jest runs
 * files in parallel workers, so each worker compiles into and removes a directory of its own. With
 * one shared dist-e2e/, one file's afterAll removed it while another file's server was starting
 * ("Cannot find module …/dist-e2e/main.js", seen in a full run).
 */
describe('compiled server for process tests', () => {
  const sibling = join(dirname(COMPILED_SERVER_DIR), `dist-e2e-${process.pid + 100000}`);
  afterAll(() => rmSync(sibling, { recursive: true, force: true }));

  it('compiles into a directory of this worker, and removes only its own', () => {
    mkdirSync(sibling, { recursive: true });
    const main = compileServer();
    expect(basename(main)).toBe('main.js');
    expect(dirname(main)).toBe(COMPILED_SERVER_DIR);
    expect(basename(COMPILED_SERVER_DIR)).toBe(`dist-e2e-${process.pid}`);
    expect(existsSync(main)).toBe(true);
    removeCompiledServer();
    expect(existsSync(COMPILED_SERVER_DIR)).toBe(false);
    // Another worker's compiled server is left alone.
    expect(existsSync(sibling)).toBe(true);
  });
});
