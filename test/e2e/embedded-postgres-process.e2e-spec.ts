import { ChildProcess, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { freePort } from '../support/scratch-postgres';
import { compileServer, removeCompiledServer, ServerProcess, startServer } from '../support/server-process';

const ADMIN = { id: 'process-admin', secret: 'process-admin-secret-0123456789' };

/**
 * The real server (compiled main.js in a child process) on an embedded PostgreSQL of its own.
 * Issue 9 item 5: a PostgreSQL that dies is restarted and the server serves again without a
 * restart. Item 6: a postmaster.pid naming a live foreign process (or a taken port) stopped the
 * start with `ERROR [ExceptionHandler] undefined`; now exit code 78 and what to do.
 */
describe('embedded PostgreSQL in the server process', () => {
  let main: string;
  let dir: string;
  let dataDir: string;
  let pgPort: number;
  let httpPort: number;
  const running: ServerProcess[] = [];
  const others: ChildProcess[] = [];

  const start = (env: Record<string, string> = {}) => {
    const server = startServer(main, {
      EMBEDDED_PG_DIR: dataDir,
      EMBEDDED_PG_PORT: String(pgPort),
      PORT: String(httpPort),
      HIE_BOOTSTRAP_ADMIN_CLIENT_ID: ADMIN.id,
      HIE_BOOTSTRAP_ADMIN_SECRET: ADMIN.secret,
      ...env,
    });
    running.push(server);
    return server;
  };
  const stop = async (server: ServerProcess) => {
    if (server.child.exitCode === null && server.child.signalCode === null) server.child.kill('SIGTERM');
    return server.exited;
  };
  const base = () => `http://127.0.0.1:${httpPort}`;
  const token = async () => {
    const res = await request(base())
      .post('/oauth2/token')
      .type('form')
      .send({ grant_type: 'client_credentials', client_id: ADMIN.id, client_secret: ADMIN.secret, scope: 'system/Organization.rs', purpose_of_use: 'HSYSADMIN' });
    expect(res.status).toBe(200);
    return res.body.access_token as string;
  };
  const postmasterPid = () => Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);

  beforeAll(async () => {
    main = compileServer();
    dir = mkdtempSync(join(tmpdir(), 'hie-process-'));
    chmodSync(dir, 0o755); // as root, initdb runs as the postgres user
    dataDir = join(dir, 'postgres');
    pgPort = await freePort();
    httpPort = await freePort();
  }, 120_000);

  afterAll(async () => {
    // SIGTERM: the server stops its PostgreSQL; never leave a cluster behind.
    await Promise.all(running.map(stop));
    for (const p of others) p.kill('SIGKILL');
    if (dir) rmSync(dir, { recursive: true, force: true });
    removeCompiledServer();
  }, 60_000);

  it('restarts a killed PostgreSQL with backoff, logged; the server serves again without a restart', async () => {
    const server = start();
    await server.waitFor('FHIR server listening', 150_000);
    const bearer = await token();
    expect((await request(base()).get('/fhir/Organization?_count=1').set('Authorization', `Bearer ${bearer}`)).status).toBe(200);

    const killed = postmasterPid();
    process.kill(killed, 'SIGKILL');
    await server.waitFor('embedded PostgreSQL exited unexpectedly (signal SIGKILL); restarting it', 10_000);
    await server.waitFor(/embedded PostgreSQL restarted on 127\.0\.0\.1:\d+ \(attempt \d+\)/, 60_000);
    expect(postmasterPid()).not.toBe(killed);

    // The pool drops the dead connections and opens new ones.
    let ready = 0;
    for (const deadline = Date.now() + 30_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 250))) {
      ready = (await request(base()).get('/readyz')).status;
      if (ready === 200) break;
    }
    expect(ready).toBe(200);
    const after = await request(base()).get('/fhir/Organization?_count=1').set('Authorization', `Bearer ${bearer}`);
    expect(after.status).toBe(200);
    expect(after.body.resourceType).toBe('Bundle');
    // The log names the process and the attempt, never data.
    expect(server.stderr()).toMatch(/restarting embedded PostgreSQL in 500 ms \(attempt 1\)/);

    expect(await stop(server)).toBe(0);
  }, 240_000);

  it('a postmaster.pid naming a live process that is not this cluster: exit 78 with what is wrong and what to do', async () => {
    const foreign = spawn('sleep', ['300'], { stdio: 'ignore' });
    others.push(foreign);
    const pidFile = join(dataDir, 'postmaster.pid');
    writeFileSync(pidFile, `${foreign.pid}\n${dataDir}\n${Math.floor(Date.now() / 1000)}\n${pgPort}\n/tmp\n127.0.0.1\n  1234 5678\nready   \n`);
    try {
      const server = start();
      expect(await server.exited).toBe(78);
      expect(server.stderr()).toContain(
        `The embedded PostgreSQL data directory ${dataDir} is in use: its postmaster.pid names process ${foreign.pid} (sleep), which is running, ` +
          `but this server's PostgreSQL does not answer on 127.0.0.1:${pgPort}. `,
      );
      expect(server.stderr()).toContain(`If it is not (the process id was reused after a crash or a container restart), delete ${pidFile} and start again.`);
      expect(server.stderr()).not.toContain('undefined');
      // Nothing answers: the server never listened.
      await expect(request(base()).get('/healthz')).rejects.toThrow(/ECONNREFUSED/);
    } finally {
      foreign.kill('SIGKILL');
      rmSync(pidFile, { force: true });
    }
  }, 120_000);

  it('a port taken by another program: exit 78 naming the port and EMBEDDED_PG_PORT', async () => {
    const taken = await freePort();
    const squatter: Server = createServer((socket) => socket.end());
    await new Promise<void>((resolve) => squatter.listen(taken, '127.0.0.1', resolve));
    try {
      const server = start({ EMBEDDED_PG_PORT: String(taken) });
      expect(await server.exited).toBe(78);
      expect(server.stderr()).toContain(
        `Port ${taken} on 127.0.0.1 is in use by another program, so the embedded PostgreSQL cannot listen on it. Set EMBEDDED_PG_PORT to a free port, or stop the program that uses it.`,
      );
    } finally {
      await new Promise((resolve) => squatter.close(resolve));
    }
  }, 120_000);
});
