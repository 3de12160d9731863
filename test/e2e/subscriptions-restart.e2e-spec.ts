import { mkdtempSync, chmodSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import request from 'supertest';
import { FHIR_JSON, hiePatient } from '../support/fixtures';
import { NotificationReceiver } from '../support/notification-receiver';
import { freePort, ScratchPostgres, startScratchPostgres } from '../support/scratch-postgres';
import { compileServer, removeCompiledServer, ServerProcess, startServer } from '../support/server-process';

const ADMIN = { id: 'subs-admin', secret: 'subs-admin-secret-0123456789' };

/**
 * The compiled server with rest-hook notifications pending (the receiver down): stopped with
 * SIGTERM and started again on the same database, every notification arrives (the outbox); a
 * write's pending match survives SIGKILL.
 */
describe('rest-hook notifications survive a server restart', () => {
  let main: string;
  let dir: string;
  let pgPort: number;
  let httpPort: number;
  let receiver: NotificationReceiver;
  const running: ServerProcess[] = [];

  const start = (db: Record<string, string> = { EMBEDDED_PG_DIR: join(dir, 'postgres'), EMBEDDED_PG_PORT: String(pgPort) }, extra: Record<string, string> = {}) => {
    const server = startServer(main, {
      ...db,
      PORT: String(httpPort),
      HIE_BOOTSTRAP_ADMIN_CLIENT_ID: ADMIN.id,
      HIE_BOOTSTRAP_ADMIN_SECRET: ADMIN.secret,
      JOBS_POLL_SECONDS: '0.5',
      SUBSCRIPTION_RETRY_DELAY_SECONDS: '1',
      SUBSCRIPTION_RETRY_DELAY_MAX_SECONDS: '2',
      ...extra,
    });
    running.push(server);
    return server;
  };
  const stop = async (server: ServerProcess) => {
    if (server.child.exitCode === null && server.child.signalCode === null) server.child.kill('SIGTERM');
    return server.exited;
  };
  const base = () => `http://127.0.0.1:${httpPort}`;
  const token = async (clientId: string, secret: string, scope: string, purpose: string) => {
    const res = await request(base()).post('/oauth2/token').type('form').send({ grant_type: 'client_credentials', client_id: clientId, client_secret: secret, scope, purpose_of_use: purpose });
    expect(res.status).toBe(200);
    return res.body.access_token as string;
  };

  /** Organizations a (writes Tasks) and b (subscribes to Tasks it owns, with payload), their clients, b's Subscription to `endpoint`. */
  const parties = async (endpoint: string) => {
    const admin = await token(ADMIN.id, ADMIN.secret, 'system/Organization.cruds', 'HSYSADMIN');
    const client = async (name: string) => {
      const org = await request(base()).post('/fhir/Organization').set('Authorization', `Bearer ${admin}`).set('Content-Type', FHIR_JSON).send({ resourceType: 'Organization', name });
      expect(org.status).toBe(201);
      const reg = await request(base()).post('/admin/clients').set('Authorization', `Bearer ${admin}`).send({ clientId: `subs-${name}`, organization: org.body.id, role: 'hospital', scopes: ['system/*.cruds'], purposes: ['TREAT'] });
      expect(reg.status).toBe(201);
      const bearer = await token(`subs-${name}`, reg.body.clientSecret, 'system/*.cruds', 'TREAT');
      return { org: org.body.id as string, send: (path: string, body: object) => request(base()).post(path).set('Authorization', `Bearer ${bearer}`).set('Content-Type', FHIR_JSON).send(body) };
    };
    const a = await client('a');
    const b = await client('b');
    const sub = await b.send('/fhir/Subscription', {
      resourceType: 'Subscription',
      status: 'requested',
      reason: 'referrals for b',
      criteria: `Task?owner=Organization/${b.org}`,
      channel: { type: 'rest-hook', endpoint, payload: 'application/fhir+json' },
    });
    expect(sub.status).toBe(201);
    return { a, b, subscription: sub.body.id as string };
  };

  beforeAll(async () => {
    main = compileServer();
    dir = mkdtempSync(join(tmpdir(), 'hie-subs-'));
    chmodSync(dir, 0o755); // as root, initdb runs as the postgres user
    pgPort = await freePort();
    httpPort = await freePort();
    receiver = new NotificationReceiver();
  }, 120_000);

  afterAll(async () => {
    await Promise.all(running.map(stop));
    await receiver?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
    removeCompiledServer();
  }, 60_000);

  it('delivers every notification pending at SIGTERM after the next start, each once by id', async () => {
    const endpoint = await receiver.start();
    receiver.down = true;
    let server = start();
    await server.waitFor('FHIR server listening', 150_000);
    const { a, b } = await parties(endpoint);
    const patient = await a.send('/fhir/Patient', hiePatient());
    expect(patient.status).toBe(201);
    const tasks: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await a.send('/fhir/Task', { resourceType: 'Task', status: 'requested', intent: 'order', owner: { reference: `Organization/${b.org}` }, for: { reference: `Patient/${patient.body.id}` } });
      expect(res.status).toBe(201);
      tasks.push(res.body.id);
    }
    // Pending: each tried at least once and refused.
    await receiver.waitFor(() => tasks.every((id) => receiver.attempts.some((n) => n.body.includes(id))), 60_000);
    expect(receiver.delivered()).toEqual([]);
    expect(await stop(server)).toBe(0);

    receiver.down = false;
    server = start();
    await server.waitFor('FHIR server listening', 150_000);
    await receiver.waitFor(() => receiver.delivered().length >= 3, 60_000);
    const delivered = receiver.delivered();
    expect(delivered.map((n) => JSON.parse(n.body).id as string).sort()).toEqual([...tasks].sort());
    // Each notification kept its id across attempts before and after the restart.
    for (const id of tasks) expect(new Set(receiver.attempts.filter((x) => x.body.includes(`"id":"${id}"`)).map((x) => x.id)).size).toBe(1);
  }, 400_000);

  it('redelivers a notification whose server was killed (SIGKILL) mid-delivery, after its lease, with the same X-Notification-Id', async () => {
    // A cluster of its own: SIGKILL must not leave the server's embedded PostgreSQL behind.
    const pg: ScratchPostgres = await startScratchPostgres();
    // The SIGTERM test's server gives up the port; a receiver of this test's own.
    await Promise.all(running.map(stop));
    const receiver = new NotificationReceiver();
    try {
      const db = { DATABASE_URL: pg.url() };
      // A lease of 10 s: (batch of 8 / 8 at once + 1) x a 5 s POST limit.
      const lease = { SUBSCRIPTION_DELIVERY_BATCH_SIZE: '8', SUBSCRIPTION_DELIVERY_CONCURRENCY: '8', SUBSCRIPTION_TIMEOUT_MS: '5000', SUBSCRIPTION_DELIVERY_LEASE_SECONDS: '2' };
      const endpoint = await receiver.start();
      receiver.hold = true;
      let server = start(db, lease);
      await server.waitFor('FHIR server listening', 150_000);
      const { a, b } = await parties(endpoint);
      const patient = await a.send('/fhir/Patient', hiePatient());
      expect(patient.status).toBe(201);
      const task = await a.send('/fhir/Task', { resourceType: 'Task', status: 'requested', intent: 'order', owner: { reference: `Organization/${b.org}` }, for: { reference: `Patient/${patient.body.id}` } });
      expect(task.status).toBe(201);
      // The POST is in flight (the receiver holds it): the server dies without a word.
      await receiver.waitFor(() => receiver.attempts.length === 1, 60_000);
      const killedAt = Date.now();
      server.child.kill('SIGKILL');
      expect(await server.exited).toBe('SIGKILL');
      const [held] = receiver.attempts;
      expect(JSON.parse(held.body).id).toBe(task.body.id);

      receiver.hold = false;
      server = start(db, lease);
      await server.waitFor('FHIR server listening', 150_000);
      await receiver.waitFor(() => receiver.delivered().length === 1, 60_000);
      const [delivered] = receiver.delivered();
      expect(delivered.id).toBe(held.id);
      expect(JSON.parse(delivered.body).id).toBe(task.body.id);
      // Not before the dead worker's lease passed (10 s from its claim, which preceded the kill).
      expect(delivered.at - held.at).toBeGreaterThanOrEqual(9_000);
      expect(receiver.attempts.map((x) => [x.id, x.answered])).toEqual([[held.id, 0], [held.id, 204]]);
      expect(killedAt).toBeGreaterThanOrEqual(held.at);
      expect(await stop(server)).toBe(0);
    } finally {
      await Promise.all(running.map(stop));
      await receiver.stop();
      await pg.destroy();
    }
  }, 400_000);

  it('judges a write\'s pending match committed before a SIGKILL after the next start, and delivers it once', async () => {
    const pg: ScratchPostgres = await startScratchPostgres();
    await Promise.all(running.map(stop));
    const receiver = new NotificationReceiver();
    const sql = new Client({ connectionString: pg.url() });
    try {
      const db = { DATABASE_URL: pg.url() };
      const endpoint = await receiver.start();
      // No job workers: the write commits its pending match and no one judges it yet.
      let server = start(db, { JOBS_WORKERS: 'off' });
      await server.waitFor('FHIR server listening', 150_000);
      const { a, b } = await parties(endpoint);
      const patient = await a.send('/fhir/Patient', hiePatient());
      expect(patient.status).toBe(201);
      const task = await a.send('/fhir/Task', { resourceType: 'Task', status: 'requested', intent: 'order', owner: { reference: `Organization/${b.org}` }, for: { reference: `Patient/${patient.body.id}` } });
      expect(task.status).toBe(201);
      await sql.connect();
      const pendingOf = async (): Promise<number> => (await sql.query(`SELECT count(*)::int AS n FROM subscription_match_pending WHERE resource_id = $1`, [task.body.id])).rows[0].n as number;
      expect(await pendingOf()).toBe(1);
      server.child.kill('SIGKILL');
      expect(await server.exited).toBe('SIGKILL');

      server = start(db);
      await server.waitFor('FHIR server listening', 150_000);
      await receiver.waitFor(() => receiver.delivered().length === 1, 60_000);
      expect(JSON.parse(receiver.delivered()[0].body).id).toBe(task.body.id);
      expect(await pendingOf()).toBe(0);
      expect(await stop(server)).toBe(0);
      expect(receiver.attempts).toHaveLength(1);
    } finally {
      await sql.end().catch(() => undefined);
      await Promise.all(running.map(stop));
      await receiver.stop();
      await pg.destroy();
    }
  }, 400_000);
});
