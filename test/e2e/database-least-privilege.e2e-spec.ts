import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { DataSource } from 'typeorm';
import { dataSourceOptions } from '../../src/database/data-source.options';
import { loadAppConfig } from '../../src/config/app.config';
import { runtimeDataSourceOptions, stopEmbeddedDatabase } from '../../src/database/database.module';
import { CREDENTIALS_FILE, startEmbeddedPostgres } from '../../src/database/embedded-postgres';
import { freePort, startScratchPostgres } from '../support/scratch-postgres';
import { createTestApp, TestApp } from '../support/test-app';
import { registerTestClient } from '../support/auth';
import { AuditTrailRepository } from '../../src/audit/audit-trail.repository';
import { JobQueue } from '../../src/jobs/job-queue';
import request from 'supertest';

/** Runs `sql` as `user`/`password` on the database `hie` of the cluster on `port`. */
async function asRole(port: number, user: string, password: string, sql: string): Promise<unknown[]> {
  const client = new Client({ host: '127.0.0.1', port, user, password, database: 'hie' });
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
}

/**
 * Issue 9 item 13: the embedded PostgreSQL ran the app as superuser `postgres` with a fixed
 * password. Now the passwords are generated (kept 0600 in the cluster directory) and the app's
 * DataSource connects as `hie_app`, which may read and write rows but not change the schema.
 * The real app, started without DATABASE_URL, on an embedded cluster of its own.
 */
describe('embedded PostgreSQL: generated credentials and a least-privileged app role', () => {
  const saved = { url: process.env.DATABASE_URL, dir: process.env.EMBEDDED_PG_DIR, port: process.env.EMBEDDED_PG_PORT };
  let dir: string;
  let port: number;
  let t: TestApp;
  const credentials = () => JSON.parse(readFileSync(join(dir, 'postgres', CREDENTIALS_FILE), 'utf8'));

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'hie-least-privilege-'));
    chmodSync(dir, 0o755); // as root, initdb runs as the postgres user
    port = await freePort();
    delete process.env.DATABASE_URL;
    process.env.EMBEDDED_PG_DIR = join(dir, 'postgres');
    process.env.EMBEDDED_PG_PORT = String(port);
    t = await createTestApp();
  }, 180_000);

  afterAll(async () => {
    await t?.close();
    await stopEmbeddedDatabase();
    rmSync(dir, { recursive: true, force: true });
    process.env.DATABASE_URL = saved.url;
    process.env.EMBEDDED_PG_DIR = saved.dir;
    process.env.EMBEDDED_PG_PORT = saved.port;
  });

  it('the server’s DataSource is hie_app: no superuser, no roles, no DDL, but reads and writes work', async () => {
    expect(await t.db.query('SELECT current_user AS role, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user')).toEqual([
      { role: 'hie_app', rolsuper: false, rolcreaterole: false, rolcreatedb: false },
    ]);
    await expect(t.db.query('DROP TABLE resource')).rejects.toThrow('must be owner of table resource');
    await expect(t.db.query('CREATE ROLE intruder SUPERUSER')).rejects.toThrow('permission denied to create role');
    await expect(t.db.query('TRUNCATE resource')).rejects.toThrow('permission denied for table resource');
    await expect(t.db.query('CREATE TABLE stash (x text)')).rejects.toThrow('permission denied for schema public');
    const created = await t.api
      .post('/fhir/Patient')
      .set('Content-Type', 'application/fhir+json')
      .send({ resourceType: 'Patient', identifier: [{ system: 'http://hospital-a.example.org/mrn', value: 'lp-1' }], name: [{ family: 'Least' }], gender: 'other' });
    expect(created.status).toBe(201);
    expect((await t.api.get(`/fhir/Patient/${created.body.id}`)).status).toBe(200);
  });

  it('generates random passwords on first start, kept mode 0600; the old fixed password is refused', async () => {
    expect(statSync(join(dir, 'postgres', CREDENTIALS_FILE)).mode & 0o777).toBe(0o600);
    const c = credentials();
    expect(c.superuser.user).toBe('postgres');
    expect(c.app.user).toBe('hie_app');
    expect(c.superuser.password).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(c.app.password).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(c.app.password).not.toBe(c.superuser.password);
    await expect(asRole(port, 'postgres', 'hie-embedded', 'SELECT 1')).rejects.toThrow('password authentication failed for user "postgres"');
    expect(await asRole(port, 'postgres', c.superuser.password, 'SELECT rolsuper FROM pg_roles WHERE rolname = current_user')).toEqual([{ rolsuper: true }]);
  });

  it('tables of later migrations are covered, and an append-only table can deny hie_app UPDATE and DELETE', async () => {
    const { superuser, app } = credentials();
    // What a later migration (run as the owner) does for an append-only audit table.
    await asRole(port, 'postgres', superuser.password, 'CREATE TABLE append_only_probe (id serial PRIMARY KEY, note text)');
    await asRole(port, 'postgres', superuser.password, 'REVOKE UPDATE, DELETE ON append_only_probe FROM hie_app');
    expect(await asRole(port, 'hie_app', app.password, `INSERT INTO append_only_probe (note) VALUES ('a') RETURNING id`)).toEqual([{ id: 1 }]);
    expect(await asRole(port, 'hie_app', app.password, 'SELECT note FROM append_only_probe')).toEqual([{ note: 'a' }]);
    await expect(asRole(port, 'hie_app', app.password, `UPDATE append_only_probe SET note = 'b'`)).rejects.toThrow('permission denied for table append_only_probe');
    await expect(asRole(port, 'hie_app', app.password, 'DELETE FROM append_only_probe')).rejects.toThrow('permission denied for table append_only_probe');
    await expect(asRole(port, 'hie_app', app.password, 'TRUNCATE append_only_probe')).rejects.toThrow('permission denied for table append_only_probe');
  });

  it('audit trail: hie_app cannot UPDATE, DELETE, TRUNCATE or INSERT around audit_append, on the table, its partitions and partitions made later; it still appends and verifies', async () => {
    const { superuser, app } = credentials();
    const denied = (table: string) => `permission denied for table ${table}`;
    const partition = (monthsAhead: number): string => {
      const d = new Date();
      const m = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + monthsAhead, 1));
      return `audit_event_${m.getUTCFullYear()}_${String(m.getUTCMonth() + 1).padStart(2, '0')}`;
    };
    // The app appends (through audit_append, SECURITY DEFINER) and reads.
    const before = Number((await t.db.query('SELECT seq FROM audit_chain_head'))[0].seq);
    expect((await t.api.get('/fhir/Patient?_count=1')).status).toBe(200);
    expect(Number((await t.db.query('SELECT seq FROM audit_chain_head'))[0].seq)).toBeGreaterThan(before);
    for (const table of ['audit_event', 'audit_event_default', partition(0)]) {
      await expect(t.db.query(`UPDATE ${table} SET outcome = '0'`)).rejects.toThrow(denied(table));
      await expect(t.db.query(`DELETE FROM ${table}`)).rejects.toThrow(denied(table));
      await expect(t.db.query(`TRUNCATE ${table}`)).rejects.toThrow(denied(table));
    }
    await expect(t.db.query(`INSERT INTO audit_event SELECT * FROM audit_event LIMIT 1`)).rejects.toThrow(denied('audit_event'));
    await expect(t.db.query(`UPDATE audit_chain_head SET seq = 0`)).rejects.toThrow(denied('audit_chain_head'));
    await expect(t.db.query(`SELECT * FROM audit_chain_head FOR UPDATE`)).rejects.toThrow(denied('audit_chain_head'));
    await expect(t.db.query(`ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only`)).rejects.toThrow('must be owner of table audit_event');
    // A partition the app creates ahead (audit_ensure_partitions runs as the owner) ...
    expect(await t.db.query(`SELECT to_regclass($1) AS t`, [partition(30)])).toEqual([{ t: null }]);
    await t.db.query('SELECT audit_ensure_partitions(30)');
    // ... and one a DBA creates by hand, which the schema's default privileges would open to hie_app.
    await asRole(port, 'postgres', superuser.password, `CREATE TABLE audit_event_2099_01 PARTITION OF audit_event FOR VALUES FROM ('2099-01-01') TO ('2099-02-01')`);
    for (const table of [partition(30), 'audit_event_2099_01']) {
      await expect(asRole(port, 'hie_app', app.password, `UPDATE ${table} SET outcome = '0'`)).rejects.toThrow(denied(table));
      await expect(asRole(port, 'hie_app', app.password, `DELETE FROM ${table}`)).rejects.toThrow(denied(table));
      await expect(asRole(port, 'hie_app', app.password, `TRUNCATE ${table}`)).rejects.toThrow(denied(table));
    }
    expect(await t.app.get(AuditTrailRepository).appendOnlyGuard()).toEqual({ role: 'hie_app', privileges: true });
    const auditor = await registerTestClient(t, { role: 'auditor', scopes: ['system/AuditEvent.rs'], purposes: ['HOPERAT'] });
    const head = Number((await t.db.query('SELECT seq FROM audit_chain_head'))[0].seq);
    const verified = await request(t.http).get(`/fhir/$verify-chain?to=${head}`).set('Authorization', `Bearer ${await auditor.token()}`);
    expect(verified.status).toBe(200);
    expect(verified.body.parameter.filter((p: { name: string }) => ['verified', 'checked'].includes(p.name))).toEqual([
      { name: 'verified', valueBoolean: true },
      { name: 'checked', valueInteger: head },
    ]);
  });

  it('audit trail: the owner (a single DATABASE_URL) is guarded by the trigger only, and the check says so', async () => {
    const { superuser } = credentials();
    const ds = new DataSource(dataSourceOptions(`postgres://postgres:${superuser.password}@127.0.0.1:${port}/hie`, 1));
    await ds.initialize();
    try {
      expect(await new AuditTrailRepository(ds).appendOnlyGuard()).toEqual({ role: 'postgres', privileges: false });
      await expect(ds.query(`UPDATE audit_event SET outcome = '0'`)).rejects.toThrow('audit_event is append-only: UPDATE refused');
    } finally {
      await ds.destroy();
    }
  });

  it('with every migration applied, the app role alone can open the DataSource (migrations as a separate deploy step)', async () => {
    const { app } = credentials();
    const ds = new DataSource(dataSourceOptions(`postgres://hie_app:${app.password}@127.0.0.1:${port}/hie`, 1));
    await ds.initialize();
    try {
      expect(await ds.showMigrations()).toBe(false);
      expect(await ds.query('SELECT current_user AS role')).toEqual([{ role: 'hie_app' }]);
    } finally {
      await ds.destroy();
    }
  });

  it('DATABASE_URL with DATABASE_MIGRATION_URL: migrations as the owner, the app as hie_app with row privileges only', async () => {
    const { superuser, app } = credentials();
    await asRole(port, 'postgres', superuser.password, 'CREATE DATABASE hie_split');
    const config = loadAppConfig({
      DATABASE_URL: `postgres://hie_app:${app.password}@127.0.0.1:${port}/hie_split`,
      DATABASE_MIGRATION_URL: `postgres://postgres:${superuser.password}@127.0.0.1:${port}/hie_split`,
    });
    const options = await runtimeDataSourceOptions(config, 1);
    expect(options).toMatchObject({ url: config.databaseUrl, migrationsRun: false });
    const ds = new DataSource(options);
    await ds.initialize();
    try {
      expect(await ds.showMigrations()).toBe(false);
      expect(await ds.query('SELECT current_user AS role, count(*)::int AS n FROM resource')).toEqual([{ role: 'hie_app', n: 0 }]);
      expect(await ds.query(`SELECT tableowner FROM pg_tables WHERE tablename = 'resource'`)).toEqual([{ tableowner: 'postgres' }]);
      await expect(ds.query('DROP TABLE resource')).rejects.toThrow('must be owner of table resource');
      // The outbox job queue (pg-boss, schema built by the migration) works with row privileges only.
      const jobs = new JobQueue(ds, { ...config, jobs: { workers: true, poolSize: 2, pollSeconds: 0.5, superviseSeconds: 1 } });
      jobs.define('test.least-privilege', { retryLimit: 1, retryDelaySeconds: 1, retryBackoff: false, expireInSeconds: 30 });
      const delivered: unknown[] = [];
      await jobs.work('test.least-privilege', async (job) => {
        delivered.push(job.data);
      });
      await jobs.onApplicationBootstrap();
      try {
        await ds.transaction((tx) => jobs.enqueue(tx, 'test.least-privilege', { n: 1 }));
        for (let i = 0; i < 300 && !delivered.length; i++) await new Promise((r) => setTimeout(r, 100));
        expect(delivered).toEqual([{ n: 1 }]);
      } finally {
        await jobs.onApplicationShutdown();
      }
    } finally {
      await ds.destroy();
    }
  }, 120_000);

  it('a cluster created with the old fixed password gets generated credentials on its next start', async () => {
    const legacy = await startScratchPostgres({ password: 'hie-embedded', databases: ['hie'] });
    await legacy.stop();
    const messages: string[] = [];
    const handle = await startEmbeddedPostgres(legacy.dir, legacy.port, (m) => messages.push(m));
    try {
      expect(statSync(join(legacy.dir, CREDENTIALS_FILE)).mode & 0o777).toBe(0o600);
      const c = JSON.parse(readFileSync(join(legacy.dir, CREDENTIALS_FILE), 'utf8'));
      expect(messages).toContain(
        `replaced the fixed superuser password of the embedded PostgreSQL with a generated one (kept in ${join(legacy.dir, CREDENTIALS_FILE)})`,
      );
      await expect(asRole(legacy.port, 'postgres', 'hie-embedded', 'SELECT 1')).rejects.toThrow('password authentication failed');
      expect(await asRole(legacy.port, 'hie_app', c.app.password, 'SELECT rolsuper FROM pg_roles WHERE rolname = current_user')).toEqual([{ rolsuper: false }]);
      // Through the cluster's Unix socket (docs/performance.md, "Unix socket"), with the generated password.
      expect(handle.url).toBe(`postgres://hie_app:${c.app.password}@127.0.0.1:${legacy.port}/hie?host=%2Ftmp`);
    } finally {
      await handle.stop();
      await legacy.destroy();
    }
  }, 120_000);
});
