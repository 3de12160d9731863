import type { Subscription, Task } from '@medplum/fhirtypes';
import { notificationId, NotificationJobData } from '../../src/referrals/subscriptions/subscription-matching.listener';
import { SubscriptionDeliveryJob } from '../../src/referrals/subscriptions/subscription-delivery.job';
import { SubscriptionNotifications } from '../../src/referrals/subscriptions/subscription-notification.repository';
import { ResourceRepository } from '../../src/fhir/storage/resource.repository';
import { StorageSessions } from '../../src/fhir/storage/storage-session';
import { SystemAccess } from '../../src/fhir/pipeline/system-access';
import type { AuditEventRow } from '../../src/audit/audit-event.builder';
import { AuditTrailRepository } from '../../src/audit/audit-trail.repository';
import { AuditTrailWriter } from '../../src/audit/audit-trail.writer';
import { HospitalSend, hospitalSender } from '../support/auth';
import { consentResource } from '../support/consent';
import { hiePatient } from '../support/fixtures';
import { notificationsSettled } from '../support/jobs';
import { NotificationReceiver } from '../support/notification-receiver';
import { createTestApp, TestApp } from '../support/test-app';

// Two retries, 1 s then 2 s apart; small claimed batches so several workers share a backlog.
process.env.SUBSCRIPTION_RETRY_LIMIT = '2';
process.env.SUBSCRIPTION_RETRY_DELAY_SECONDS = '1';
process.env.SUBSCRIPTION_RETRY_DELAY_MAX_SECONDS = '2';
process.env.SUBSCRIPTION_ERROR_AFTER_FAILURES = '3';
process.env.SUBSCRIPTION_DELIVERY_BATCH_SIZE = '4';
process.env.SUBSCRIPTION_DELIVERY_POLL_MS = '200';

const RUN = Date.now().toString(36);
const ORG_A = `outbox-a-${RUN}`;
const ORG_B = `outbox-b-${RUN}`;

/** The rest-hook outbox table (subscription_notification): claims, retries, the retry limit. */
describe('rest-hook notification outbox', () => {
  let t: TestApp;
  let a: HospitalSend;
  let b: HospitalSend;
  let patient: string;
  const receivers: NotificationReceiver[] = [];

  /** B's Subscription to Tasks it owns with `code`, sent to a receiver of its own. */
  const subscribe = async (code: string): Promise<{ subscription: Subscription; receiver: NotificationReceiver }> => {
    const receiver = new NotificationReceiver();
    receivers.push(receiver);
    const endpoint = await receiver.start();
    const res = await b('post', '/fhir/Subscription').send({
      resourceType: 'Subscription',
      status: 'requested',
      reason: 'outbox test',
      criteria: `Task?owner=Organization/${ORG_B}&code=${code}`,
      channel: { type: 'rest-hook', endpoint, payload: 'application/fhir+json' },
    } satisfies Subscription);
    expect(res.status).toBe(201);
    return { subscription: res.body as Subscription, receiver };
  };
  const createTask = async (code: string): Promise<string> => {
    const res = await a('post', '/fhir/Task').send({ resourceType: 'Task', status: 'requested', intent: 'order', code: { coding: [{ code }] }, owner: { reference: `Organization/${ORG_B}` }, for: { reference: `Patient/${patient}` } } satisfies Task);
    expect(res.status).toBe(201);
    return res.body.id as string;
  };
  const rowsOf = async (subscription: string): Promise<{ id: string; attempts: number; claimed: boolean }[]> =>
    t.db.query(`SELECT id::text, attempts, claimed_until IS NOT NULL AS claimed FROM subscription_notification WHERE subscription_id = $1 ORDER BY id`, [subscription]);

  beforeAll(async () => {
    t = await createTestApp();
    [a, b] = await Promise.all([hospitalSender(t, ORG_A), hospitalSender(t, ORG_B)]);
    const res = await a('post', '/fhir/Patient').send(hiePatient());
    expect(res.status).toBe(201);
    patient = res.body.id as string;
  }, 120_000);

  afterAll(async () => {
    for (const r of receivers) await r.stop();
    await t?.close();
  });

  it('never lets two workers send one row at the same time: concurrent claims are disjoint, each notification is sent once', async () => {
    const { subscription, receiver } = await subscribe('claim');
    const task = await createTask('claim');
    await receiver.waitFor(() => receiver.delivered().length === 1);
    await notificationsSettled(t.db);
    // A backlog of 24 notifications (versions the match job did not make: delivery re-reads the current one).
    const backlog: NotificationJobData[] = Array.from({ length: 24 }, (_, i) => ({ subscriptionId: subscription.id!, resourceType: 'Task', id: task, versionId: String(100 + i) }));
    const outbox = t.app.get(SubscriptionNotifications);
    const claims: string[][] = [];
    const claim = outbox.claim.bind(outbox);
    const spy = jest.spyOn(outbox, 'claim').mockImplementation(async (limit, lease) => {
      const batch = await claim(limit, lease);
      if (batch) claims.push(batch.notifications.map((n) => n.notificationId));
      return batch;
    });
    try {
      await t.db.transaction((tx) => outbox.insertMany(tx, backlog));
      // Three more workers (as other nodes would run) beside this node's own loop, until the table is empty.
      const delivery = t.app.get(SubscriptionDeliveryJob);
      const worker = async (): Promise<void> => {
        while ((await delivery.runBatch()) > 0);
      };
      await Promise.all([worker(), worker(), worker()]);
      await notificationsSettled(t.db);
    } finally {
      spy.mockRestore();
    }
    const expected = backlog.map(notificationId).sort();
    const claimed = claims.flat();
    // Batches of at most 4, no row in two of them, all 24 claimed.
    expect(Math.max(...claims.map((c) => c.length))).toBeLessThanOrEqual(4);
    expect(claimed.length).toBe(24);
    expect([...claimed].sort()).toEqual(expected);
    const sent = receiver.attempts.filter((x) => expected.includes(x.id));
    expect(sent.map((x) => x.id).sort()).toEqual(expected);
    expect(sent.every((x) => x.answered === 204)).toBe(true);
  }, 120_000);

  it('retries a failing endpoint with backoff, then gives the notification up after SUBSCRIPTION_RETRY_LIMIT retries; the Subscription is in error', async () => {
    const { subscription, receiver } = await subscribe('give-up');
    receiver.down = true;
    const task = await createTask('give-up');
    const id = notificationId({ subscriptionId: subscription.id!, resourceType: 'Task', id: task, versionId: '1' });
    await receiver.waitFor(() => receiver.attempts.length === 3, 30_000);
    // Gone from the outbox after the third failed attempt (the first and two retries).
    for (let i = 0; i < 50 && (await rowsOf(subscription.id!)).length; i++) await new Promise((r) => setTimeout(r, 100));
    expect(await rowsOf(subscription.id!)).toEqual([]);
    await new Promise((r) => setTimeout(r, 3_000));
    expect(receiver.attempts.map((x) => [x.id, x.answered])).toEqual([[id, 503], [id, 503], [id, 503]]);
    // Backoff: 1-2 s before the first retry, then 2 s (2-4 s capped by SUBSCRIPTION_RETRY_DELAY_MAX_SECONDS).
    const [first, second, third] = receiver.attempts.map((x) => x.at);
    expect(second - first).toBeGreaterThanOrEqual(950);
    expect(third - second).toBeGreaterThanOrEqual(1_950);
    const stored = (await b('get', `/fhir/Subscription/${subscription.id}`)).body as Subscription;
    expect(stored.status).toBe('error');
    expect(stored.error).toBe('3 deliveries in a row failed; last: the endpoint answered HTTP 503');
  }, 60_000);

  it('keeps a failed notification in the outbox with its attempts counted and unclaimed while it waits its backoff', async () => {
    const { subscription, receiver } = await subscribe('waiting');
    receiver.down = true;
    const task = await createTask('waiting');
    await receiver.waitFor(() => receiver.attempts.length === 1, 30_000);
    const id = notificationId({ subscriptionId: subscription.id!, resourceType: 'Task', id: task, versionId: '1' });
    let rows = await rowsOf(subscription.id!);
    for (let i = 0; i < 50 && rows[0]?.attempts !== 1; i++) rows = await new Promise((r) => setTimeout(r, 50)).then(() => rowsOf(subscription.id!));
    expect(rows).toEqual([{ id, attempts: 1, claimed: false }]);
    receiver.down = false;
    await receiver.waitFor(() => receiver.delivered().length === 1, 30_000);
    await notificationsSettled(t.db);
    expect(receiver.attempts.map((x) => [x.id, x.answered])).toEqual([[id, 503], [id, 204]]);
  }, 60_000);

  it('reads a batch\'s resources with one statement, each under its subscriber\'s access: a resource it may no longer read is dropped', async () => {
    const { subscription, receiver } = await subscribe('batch-read');
    const kept = await createTask('batch-read');
    const gone = await createTask('batch-read');
    await receiver.waitFor(() => receiver.delivered().length === 2);
    await notificationsSettled(t.db);
    expect((await a('delete', `/fhir/Task/${gone}`)).status).toBe(200);
    // One batch (SUBSCRIPTION_DELIVERY_BATCH_SIZE 4): two notifications of each Task.
    const backlog: NotificationJobData[] = [kept, gone].flatMap((id) => ['200', '201'].map((versionId) => ({ subscriptionId: subscription.id!, resourceType: 'Task', id, versionId })));
    const repository = t.app.get(ResourceRepository);
    const many = jest.spyOn(repository, 'readCurrentForReaders');
    const one = jest.spyOn(repository, 'readCurrent');
    try {
      await t.db.transaction((tx) => t.app.get(SubscriptionNotifications).insertMany(tx, backlog));
      await notificationsSettled(t.db);
      expect(many.mock.calls).toHaveLength(1);
      const [reads] = many.mock.calls[0];
      expect(reads.map((r) => [r.resourceType, [...r.ids].sort()])).toEqual([['Task', [kept, kept, gone, gone].sort()]]);
      expect(one.mock.calls.filter(([, type]) => type === 'Task')).toEqual([]);
    } finally {
      many.mockRestore();
      one.mockRestore();
    }
    const sent = receiver.attempts.filter((x) => backlog.map(notificationId).includes(x.id));
    expect(sent.map((x) => x.id).sort()).toEqual(backlog.filter((n) => n.id === kept).map(notificationId).sort());
    expect(sent.every((x) => (JSON.parse(x.body) as Task).id === kept && x.answered === 204)).toBe(true);
  }, 60_000);

  it('judges each notification of one batch under its own subscriber\'s access, in the one statement: a stranger\'s Subscription is sent nothing', async () => {
    const { subscription: owner, receiver: ownerReceiver } = await subscribe('two-readers');
    // The patient denies C (any purpose): C may not read the Task, B may.
    const orgC = `outbox-c-${RUN}`;
    const c = await hospitalSender(t, orgC);
    const deniesC = await a('post', '/fhir/Patient').send(hiePatient());
    const consent = await a('post', '/fhir/Consent').send(consentResource(deniesC.body.id as string, { type: 'deny', actor: [{ role: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'IRCP' }] }, reference: { reference: `Organization/${orgC}` } }] }));
    expect([deniesC.status, consent.status]).toEqual([201, 201]);
    const created = await a('post', '/fhir/Task').send({ resourceType: 'Task', status: 'requested', intent: 'order', code: { coding: [{ code: 'two-readers' }] }, owner: { reference: `Organization/${ORG_B}` }, for: { reference: `Patient/${deniesC.body.id}` } } satisfies Task);
    expect(created.status).toBe(201);
    const task = created.body.id as string;
    await ownerReceiver.waitFor(() => ownerReceiver.delivered().length === 1);
    const strangerReceiver = new NotificationReceiver();
    receivers.push(strangerReceiver);
    const res = await c('post', '/fhir/Subscription').send({
      resourceType: 'Subscription',
      status: 'requested',
      reason: 'outbox test',
      criteria: 'Task?code=two-readers',
      channel: { type: 'rest-hook', endpoint: await strangerReceiver.start(), payload: 'application/fhir+json' },
    } satisfies Subscription);
    expect(res.status).toBe(201);
    expect((await c('get', `/fhir/Task/${task}`)).status).toBe(404);
    expect((await b('get', `/fhir/Task/${task}`)).status).toBe(200);
    await notificationsSettled(t.db);
    // One batch (SUBSCRIPTION_DELIVERY_BATCH_SIZE 4): two notifications for each Subscription, rows the match job did not make.
    const backlog: NotificationJobData[] = [owner.id!, res.body.id as string].flatMap((subscriptionId) => ['300', '301'].map((versionId) => ({ subscriptionId, resourceType: 'Task', id: task, versionId })));
    const repository = t.app.get(ResourceRepository);
    const many = jest.spyOn(repository, 'readCurrentForReaders');
    try {
      await t.db.transaction((tx) => t.app.get(SubscriptionNotifications).insertMany(tx, backlog));
      await notificationsSettled(t.db);
      expect(many.mock.calls).toHaveLength(1);
      expect(many.mock.calls[0][0].map((r) => [...r.ids])).toEqual([[task, task], [task, task]]);
    } finally {
      many.mockRestore();
    }
    expect(ownerReceiver.attempts.filter((x) => backlog.slice(0, 2).map(notificationId).includes(x.id)).map((x) => [(JSON.parse(x.body) as Task).id, x.answered])).toEqual([[task, 204], [task, 204]]);
    expect(strangerReceiver.attempts).toEqual([]);
  }, 60_000);

  it('reads a batch\'s resources with a generic plan that probes each key: no scan of the resource table', async () => {
    const task = await createTask('readers-plan');
    const readers = await Promise.all(['PUBHLTH', 'PUBHLTH'].map((purpose) => t.app.get(SystemAccess).mintFor(purpose)));
    await t.app.get(StorageSessions).run({ transactional: true }, async ({ tx }) => {
      const read = await t.app.get(ResourceRepository).readCurrentForReaders(readers.map((ctx) => ({ ctx, resourceType: 'Task', ids: [task] })), tx);
      // PUBHLTH may not read a hospital's Task: judged per reader, nothing readable.
      expect([...read.values()].map((m) => m.size)).toEqual([0, 0]);
      const [{ statement }] = await tx.query(`SELECT statement FROM pg_prepared_statements WHERE statement LIKE 'SELECT k.c, x.* FROM %' ORDER BY prepare_time DESC LIMIT 1`);
      const plan = ((await tx.query(`EXPLAIN (GENERIC_PLAN) ${statement}`)) as { 'QUERY PLAN': string }[]).map((r) => r['QUERY PLAN']).join('\n');
      expect(plan).toMatch(/^Nested Loop .*\n\s+->  Function Scan on k .*\n\s+->  Limit .*\n\s+->  Index (Only )?Scan using \w+ on resource r/);
      expect(plan).not.toMatch(/Seq Scan on resource |Hash Join|Merge Join/);
    });
  });

  it('appends the disclosure records of a claimed batch together: one append per batch, in one commit, one record per delivery', async () => {
    const { subscription, receiver } = await subscribe('audit-batch');
    const task = await createTask('audit-batch');
    await receiver.waitFor(() => receiver.delivered().length === 1);
    await notificationsSettled(t.db);
    // Eight notifications committed together: two claimed batches of 4.
    const backlog: NotificationJobData[] = Array.from({ length: 8 }, (_, i) => ({ subscriptionId: subscription.id!, resourceType: 'Task', id: task, versionId: String(300 + i) }));
    const outbox = t.app.get(SubscriptionNotifications);
    const writer = t.app.get(AuditTrailWriter);
    const claims: number[] = [];
    const claim = outbox.claim.bind(outbox);
    const claimed = jest.spyOn(outbox, 'claim').mockImplementation(async (limit, lease) => {
      const batch = await claim(limit, lease);
      if (batch?.notifications.some((n) => n.subscriptionId === subscription.id)) claims.push(batch.notifications.length);
      return batch;
    });
    const appendMany = jest.spyOn(writer, 'appendMany');
    const appendAlone = jest.spyOn(t.app.get(AuditTrailRepository), 'appendAlone');
    const ofTask = (rows: readonly AuditEventRow[]) => rows.filter((r) => r.entities.includes(`Task/${task}`));
    let appends: AuditEventRow[][];
    let statements: (readonly AuditEventRow[])[];
    try {
      await t.db.transaction((tx) => outbox.insertMany(tx, backlog));
      await notificationsSettled(t.db);
      // Read before the spies are restored (restoring clears their calls).
      appends = appendMany.mock.calls.map(([rows]) => ofTask(rows)).filter((rows) => rows.length);
      statements = appendAlone.mock.calls.map(([rows]) => rows);
    } finally {
      claimed.mockRestore();
      appendMany.mockRestore();
      appendAlone.mockRestore();
    }
    // One append per claimed batch, of one record per delivery in it.
    expect(claims).toEqual([4, 4]);
    expect(appends.map((rows) => rows.length)).toEqual([4, 4]);
    // Each batch's records in one statement (one commit of the chain).
    for (const rows of appends) {
      const ids = rows.map((r) => r.id);
      expect(statements.filter((batch) => ids.every((id) => batch.some((r) => r.id === id)))).toHaveLength(1);
    }
    // Stored as before: a successful read disclosed to B, naming the Task and the Subscription.
    const stored: { content: { outcome: string; entity: { what?: { reference?: string } }[] } }[] = await t.db.query(
      `SELECT content FROM audit_event WHERE id = ANY($1::uuid[]) ORDER BY seq`,
      [appends.flat().map((r) => r.id)],
    );
    expect(stored).toHaveLength(8);
    for (const { content } of stored) {
      expect(content.outcome).toBe('0');
      // The version delivery read (the current one, 1), and its patient.
      expect(content.entity.map((e) => e.what?.reference)).toEqual(expect.arrayContaining([`Task/${task}/_history/1`, `Patient/${patient}`]));
    }
    expect(receiver.attempts.filter((x) => backlog.map(notificationId).includes(x.id)).map((x) => x.answered)).toEqual(Array(8).fill(204));
  }, 60_000);
});
