import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { PgBoss } from 'pg-boss';
import { DataSource } from 'typeorm';
import { dataSourceOptions } from '../../src/database/data-source.options';
import { notificationId } from '../../src/referrals/subscriptions/subscription-matching.listener';
import { ScratchPostgres, startScratchPostgres } from '../support/scratch-postgres';

const MIGRATIONS = join(__dirname, '..', '..', 'migrations');
/** The migrations of a version before the rest-hook outboxes (1732402400400 and later). */
const before = readdirSync(MIGRATIONS).filter((f) => f.endsWith('.ts') && f < '1732402400400').map((f) => join(MIGRATIONS, f));

/**
 * Upgrading an exchange whose rest-hook work is still queued as pg-boss jobs (the versions before
 * the outbox tables): migrations 1732402400400 and 1732402400500 move every queued job (created,
 * retry, active) into their tables with its id, attempts and next attempt, leave finished ones, and
 * remove the old queues. A scratch cluster of its own: the shared test database is migrated already.
 */
describe('rest-hook outboxes: upgrading with jobs still queued in pg-boss', () => {
  let pg: ScratchPostgres;
  let boss: PgBoss | undefined;
  let ds: DataSource | undefined;

  beforeAll(async () => {
    pg = await startScratchPostgres({ databases: ['hie'] });
  }, 120_000);

  afterAll(async () => {
    await boss?.stop({ graceful: false }).catch(() => undefined);
    await ds?.destroy().catch(() => undefined);
    await pg?.destroy();
  });

  it('moves queued subscription.notify and subscription.match jobs into the outbox tables, keeps their ids, attempts and times, drops finished ones and the queues', async () => {
    // The previous version's schema, and its queues with jobs in each state.
    ds = new DataSource({ ...dataSourceOptions(pg.url('hie'), 2), migrations: before, migrationsRun: false });
    await ds.initialize();
    await ds.runMigrations({ transaction: 'each' });
    boss = new PgBoss({ connectionString: pg.url('hie'), schema: 'pgboss', supervise: false, schedule: false, migrate: false });
    boss.on('error', () => undefined);
    await boss.start();
    for (const queue of ['subscription.notify', 'subscription.match']) await boss.createQueue(queue);
    const notify = { subscriptionId: 'sub-1', resourceType: 'Task', id: 'task-1', versionId: '2' };
    const notifyId = notificationId(notify);
    await boss.send('subscription.notify', notify, { id: notifyId, startAfter: new Date(Date.now() + 3_600_000) });
    const finished = { subscriptionId: 'sub-1', resourceType: 'Task', id: 'task-done', versionId: '1' };
    await boss.send('subscription.notify', finished, { id: notificationId(finished) });
    const match = { resourceType: 'Task', id: 'task-2', versionId: '3', candidates: ['sub-1', 'sub-2'], matched: ['sub-3'] };
    await boss.send('subscription.match', match);
    await boss.send('subscription.match', { resourceType: 'Task', id: 'task-done', versionId: '1', candidates: ['sub-1'], matched: [] });
    // One of each finished (completed), one notification retried twice already.
    await ds.query(`UPDATE pgboss.job SET state = 'completed', completed_on = now() WHERE data->>'id' = 'task-done'`);
    await ds.query(`UPDATE pgboss.job SET state = 'retry', retry_count = 2 WHERE id = $1`, [notifyId]);
    const [{ startAfter }] = await ds.query(`SELECT start_after::text AS "startAfter" FROM pgboss.job WHERE id = $1`, [notifyId]);
    await boss.stop({ graceful: false });
    boss = undefined;
    await ds.destroy();

    // The upgrade: every migration, as the server runs them at start.
    ds = new DataSource({ ...dataSourceOptions(pg.url('hie'), 2), migrationsRun: false });
    await ds.initialize();
    const ran = await ds.runMigrations({ transaction: 'each' });
    expect(ran.map((m) => m.name)).toEqual(expect.arrayContaining(['SubscriptionNotification1732402400400', 'SubscriptionMatchPending1732402400500']));
    expect(await ds.query(`SELECT id::text, subscription_id, resource_type, resource_id, version_id, attempts, next_attempt_at::text AS next FROM subscription_notification`)).toEqual([
      { id: notifyId, subscription_id: 'sub-1', resource_type: 'Task', resource_id: 'task-1', version_id: '2', attempts: 2, next: startAfter },
    ]);
    expect(await ds.query(`SELECT resource_type, resource_id, version_id, candidates, matched, attempts, claimed_until FROM subscription_match_pending`)).toEqual([
      { resource_type: 'Task', resource_id: 'task-2', version_id: '3', candidates: ['sub-1', 'sub-2'], matched: ['sub-3'], attempts: 0, claimed_until: null },
    ]);
    expect(await ds.query(`SELECT name FROM pgboss.queue WHERE name LIKE 'subscription.%'`)).toEqual([]);
    expect(await ds.query(`SELECT count(*)::int AS n FROM pgboss.job WHERE name LIKE 'subscription.%'`)).toEqual([{ n: 0 }]);
  }, 120_000);
});
