import type { Subscription, Task } from '@medplum/fhirtypes';
import { SearchService } from '../../src/fhir/search/search.service';
import { MATCH_RETRY_POLICY, SubscriptionMatchJob } from '../../src/referrals/subscriptions/subscription-match.job';
import { ClaimedMatches, SubscriptionMatchesPending } from '../../src/referrals/subscriptions/subscription-match-pending.repository';
import { notificationId } from '../../src/referrals/subscriptions/subscription-matching.listener';
import { HospitalSend, hospitalSender } from '../support/auth';
import { hiePatient } from '../support/fixtures';
import { notificationsSettled, subscriptionsSettled } from '../support/jobs';
import { NotificationReceiver } from '../support/notification-receiver';
import { createTestApp, TestApp } from '../support/test-app';

// Small claimed batches; this node's own loop looks only once a minute, so the tests drive the
// match job themselves (as other nodes' workers would).
process.env.SUBSCRIPTION_MATCH_BATCH_SIZE = '4';
process.env.SUBSCRIPTION_MATCH_POLL_MS = '60000';

const RUN = Date.now().toString(36);
const ORG_A = `pending-a-${RUN}`;
const ORG_B = `pending-b-${RUN}`;

/** The writes' pending matches (table subscription_match_pending): claims, leases, retries, the retry limit. */
describe('rest-hook pending matches', () => {
  let t: TestApp;
  let a: HospitalSend;
  let patient: string;
  let subscription: Subscription;
  let pending: SubscriptionMatchesPending;
  let matchJob: SubscriptionMatchJob;
  const receiver = new NotificationReceiver();

  const createTask = async (code: string): Promise<string> => {
    const res = await a('post', '/fhir/Task').send({ resourceType: 'Task', status: 'requested', intent: 'order', code: { coding: [{ code }] }, owner: { reference: `Organization/${ORG_B}` }, for: { reference: `Patient/${patient}` } } satisfies Task);
    expect(res.status).toBe(201);
    return res.body.id as string;
  };
  const rowsOf = async (ids: string[]): Promise<{ resourceId: string; attempts: number; claimed: boolean; dueInSeconds: number | null }[]> =>
    t.db.query(
      `SELECT resource_id AS "resourceId", attempts, claimed_until IS NOT NULL AS claimed,
              CASE WHEN next_attempt_at = 'infinity' THEN NULL ELSE extract(epoch FROM next_attempt_at - now())::float8 END AS "dueInSeconds"
         FROM subscription_match_pending WHERE resource_id = ANY($1) ORDER BY id`,
      [ids],
    );
  const notified = (task: string): string => notificationId({ subscriptionId: subscription.id!, resourceType: 'Task', id: task, versionId: '1' });

  beforeAll(async () => {
    t = await createTestApp();
    pending = t.app.get(SubscriptionMatchesPending);
    matchJob = t.app.get(SubscriptionMatchJob);
    let b: HospitalSend;
    [a, b] = await Promise.all([hospitalSender(t, ORG_A), hospitalSender(t, ORG_B)]);
    const res = await a('post', '/fhir/Patient').send(hiePatient());
    expect(res.status).toBe(201);
    patient = res.body.id as string;
    const sub = await b('post', '/fhir/Subscription').send({
      resourceType: 'Subscription',
      status: 'requested',
      reason: 'pending match test',
      criteria: `Task?owner=Organization/${ORG_B}`,
      channel: { type: 'rest-hook', endpoint: await receiver.start(), payload: 'application/fhir+json' },
    } satisfies Subscription);
    expect(sub.status).toBe(201);
    subscription = sub.body as Subscription;
  }, 120_000);

  afterAll(async () => {
    await receiver.stop();
    await t?.close();
  });

  it('inserts one row per matching write, in the write, judged by no one until a worker claims it', async () => {
    const task = await createTask('one-row');
    expect(await rowsOf([task])).toEqual([{ resourceId: task, attempts: 0, claimed: false, dueInSeconds: expect.any(Number) }]);
    const [{ candidates, matched }] = await t.db.query(`SELECT candidates, matched FROM subscription_match_pending WHERE resource_id = $1`, [task]);
    expect({ candidates, matched }).toEqual({ candidates: [subscription.id], matched: [] });
    while ((await matchJob.runOnce()) > 0);
    await subscriptionsSettled(t.db);
    expect(await rowsOf([task])).toEqual([]);
    expect(receiver.delivered(subscription.id).filter((n) => n.id === notified(task))).toHaveLength(1);
  });

  it('never lets two workers judge one row at the same time: concurrent claims are disjoint, each write is notified once', async () => {
    const tasks: string[] = [];
    for (let i = 0; i < 24; i++) tasks.push(await createTask('disjoint'));
    const claims: string[][] = [];
    const claim = pending.claim.bind(pending);
    const spy = jest.spyOn(pending, 'claim').mockImplementation(async (limit, lease) => {
      const batch = await claim(limit, lease);
      if (batch) claims.push(batch.matches.map((m) => m.id));
      return batch;
    });
    try {
      // Three workers, as three nodes would run them, until no row is left.
      const worker = async (): Promise<void> => {
        while ((await matchJob.runOnce()) > 0);
      };
      await Promise.all([worker(), worker(), worker()]);
    } finally {
      spy.mockRestore();
    }
    // Batches of at most 4, no row in two of them, all 24 claimed, none left.
    expect(Math.max(...claims.map((c) => c.length))).toBeLessThanOrEqual(4);
    expect(claims.flat().length).toBe(24);
    expect([...claims.flat()].sort()).toEqual([...tasks].sort());
    expect(await rowsOf(tasks)).toEqual([]);
    await subscriptionsSettled(t.db);
    const expected = tasks.map(notified).sort();
    expect(receiver.attempts.filter((x) => expected.includes(x.id)).map((x) => x.id).sort()).toEqual(expected);
  }, 120_000);

  it('judges again, once, the rows of a worker that died with its batch claimed, after the lease; the dead worker\'s late run adds nothing', async () => {
    const task = await createTask('lease');
    // A worker claims with a 1 s lease and dies (never settles).
    const dead = (await pending.claim(4, 1)) as ClaimedMatches;
    expect(dead.matches.map((m) => m.id)).toEqual([task]);
    // Leased: not due for another worker.
    expect(await matchJob.runOnce()).toBe(0);
    await new Promise((r) => setTimeout(r, 1_100));
    expect(await matchJob.runOnce()).toBe(1);
    await subscriptionsSettled(t.db);
    // The first worker's transaction runs late: its rows are gone, so it inserts nothing.
    await matchJob.runBatch(dead);
    await subscriptionsSettled(t.db);
    expect(receiver.attempts.filter((x) => x.id === notified(task))).toHaveLength(1);
  });

  it('judges a failed batch again row by row: one row that cannot be judged does not hold back the others; it alone counts an attempt', async () => {
    const tasks = [await createTask('poison'), await createTask('poison'), await createTask('poison')];
    const poison = tasks[1];
    const search = t.app.get(SearchService);
    const readable = search.readableVersions.bind(search);
    const judged: string[][] = [];
    const spy = jest.spyOn(search, 'readableVersions').mockImplementation(async (versions, tx) => {
      judged.push(versions.map((v) => v.id));
      if (versions.some((v) => v.id === poison)) throw Object.assign(new Error('cannot judge this row'), { code: '22P02' });
      return readable(versions, tx);
    });
    try {
      // One claimed batch of the three (SUBSCRIPTION_MATCH_BATCH_SIZE 4).
      expect(await matchJob.runOnce()).toBe(3);
    } finally {
      spy.mockRestore();
    }
    // The batch, then each row alone.
    expect(judged).toEqual([tasks, [tasks[0]], [poison], [tasks[2]]]);
    const [row] = await rowsOf([poison]);
    expect(await rowsOf(tasks)).toEqual([{ resourceId: poison, attempts: 1, claimed: false, dueInSeconds: expect.any(Number) }]);
    expect(row.dueInSeconds).toBeGreaterThan(0.5);
    // (The poison row still waits: only the notifications are settled here.)
    await notificationsSettled(t.db);
    expect([tasks[0], tasks[2]].map((task) => receiver.delivered(subscription.id).filter((n) => n.id === notified(task)).length)).toEqual([1, 1]);
    expect(receiver.attempts.filter((x) => x.id === notified(poison))).toEqual([]);
    // Judged once it can be, after its backoff.
    await new Promise((r) => setTimeout(r, (row.dueInSeconds! + 0.1) * 1000));
    expect(await matchJob.runOnce()).toBe(1);
    await subscriptionsSettled(t.db);
    expect(receiver.delivered(subscription.id).filter((n) => n.id === notified(poison))).toHaveLength(1);
  }, 60_000);

  it('retries a failed batch with backoff (attempts counted, unclaimed), then gives a row up after the retry limit, kept and never due', async () => {
    const search = t.app.get(SearchService);
    const failing = jest.spyOn(search, 'readableVersions').mockRejectedValue(Object.assign(new Error('statement timeout'), { code: '57014' }));
    const retried = await createTask('retry');
    try {
      expect(await matchJob.runOnce()).toBe(1);
      // Nothing committed; 1 s x 2^0 x (1 + random) before the retry.
      const [row] = await rowsOf([retried]);
      expect(row).toEqual({ resourceId: retried, attempts: 1, claimed: false, dueInSeconds: expect.any(Number) });
      expect(row.dueInSeconds).toBeGreaterThan(0.5);
      expect(row.dueInSeconds).toBeLessThanOrEqual(2);
      expect(await matchJob.runOnce()).toBe(0);
    } finally {
      failing.mockRestore();
    }
    const [{ dueInSeconds }] = await rowsOf([retried]);
    await new Promise((r) => setTimeout(r, (dueInSeconds! + 0.1) * 1000));
    expect(await matchJob.runOnce()).toBe(1);
    await subscriptionsSettled(t.db);
    expect(receiver.delivered(subscription.id).filter((n) => n.id === notified(retried))).toHaveLength(1);

    // A row on its last retry: given up when it fails once more.
    const givenUp = await createTask('give-up');
    await t.db.query(`UPDATE subscription_match_pending SET attempts = $2 WHERE resource_id = $1`, [givenUp, MATCH_RETRY_POLICY.retryLimit]);
    const failingAgain = jest.spyOn(search, 'readableVersions').mockRejectedValue(new Error('still failing'));
    try {
      expect(await matchJob.runOnce()).toBe(1);
    } finally {
      failingAgain.mockRestore();
    }
    expect(await rowsOf([givenUp])).toEqual([{ resourceId: givenUp, attempts: MATCH_RETRY_POLICY.retryLimit + 1, claimed: false, dueInSeconds: null }]);
    expect(await pending.pending()).toEqual({ open: 0, givenUp: 1 });
    await expect(subscriptionsSettled(t.db, 5)).rejects.toThrow('1 pending subscription match(es) given up');
    expect(await matchJob.runOnce()).toBe(0);
    expect(receiver.attempts.filter((x) => x.id === notified(givenUp))).toEqual([]);
  }, 60_000);
});
