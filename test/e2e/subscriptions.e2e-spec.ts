import type { Bundle, Subscription, Task } from '@medplum/fhirtypes';
import request from 'supertest';
import type { AuditRecord } from '../../src/fhir/pipeline/audit-record';
import { SystemAccess } from '../../src/fhir/pipeline/system-access';
import { SearchService } from '../../src/fhir/search/search.service';
import { StorageSession, StorageSessions } from '../../src/fhir/storage/storage-session';
import { READERS_PER_STATEMENT } from '../../src/fhir/storage/prepared-statement';
import { ResourceRepository } from '../../src/fhir/storage/resource.repository';
import { SubscriberAccess } from '../../src/referrals/subscriptions/subscriber-access';
import { SubscriptionRegistrations } from '../../src/referrals/subscriptions/subscription-registration.repository';
import { JobQueue } from '../../src/jobs/job-queue';
import { notificationId, NotificationJobData, SubscriptionMatchingListener } from '../../src/referrals/subscriptions/subscription-matching.listener';
import { ClaimedMatches, MatchJobData, SubscriptionMatchesPending } from '../../src/referrals/subscriptions/subscription-match-pending.repository';
import { SubscriptionNotifications } from '../../src/referrals/subscriptions/subscription-notification.repository';
import { SubscriptionMatchJob } from '../../src/referrals/subscriptions/subscription-match.job';
import { SUBSCRIPTION_SECRET_URL } from '../../src/referrals/subscriptions/subscription-registration.listener';
import { captureAuditRecords } from '../support/audit';
import { HospitalSend, hospitalSender, registerTestClient } from '../support/auth';
import { consentResource } from '../support/consent';
import { FHIR_JSON, hiePatient } from '../support/fixtures';
import { subscriptionsSettled } from '../support/jobs';
import { NotificationReceiver, signatureValid } from '../support/notification-receiver';
import { createTestApp, TestApp } from '../support/test-app';

// Small backoff so a receiver down for three attempts is served within seconds.
process.env.JOBS_POLL_SECONDS = '0.5';
process.env.SUBSCRIPTION_RETRY_DELAY_SECONDS = '1';
process.env.SUBSCRIPTION_RETRY_DELAY_MAX_SECONDS = '2';
process.env.SUBSCRIPTION_ERROR_AFTER_FAILURES = '3';
process.env.SUBSCRIPTION_ENDPOINT_ALLOW = 'https://hooks.allowed.example/fhir/';

const RUN = Date.now().toString(36);
const ORG_A = `sub-a-${RUN}`; // writes Tasks
const ORG_B = `sub-b-${RUN}`; // subscribes
const ORG_C = `sub-c-${RUN}`; // neither
const SECRET = `s3cret-${RUN}-0123456789abcdef`;

describe('rest-hook Subscriptions: registration, matching under the subscriber\'s access, delivery', () => {
  let t: TestApp;
  let a: HospitalSend;
  let b: HospitalSend;
  let c: HospitalSend;
  let receiver: NotificationReceiver;
  let endpoint: string;
  let records: AuditRecord[];
  let patient: string;
  let subscription: Subscription;
  /** Every notification the match job inserted into the outbox table (rows are deleted once delivered). */
  const inserted: NotificationJobData[] = [];
  /** Every pending match a write inserted (rows are deleted once judged). */
  const added: MatchJobData[] = [];
  /** Every batch of pending matches a worker claimed. */
  const claimed: ClaimedMatches[] = [];
  /** While the matching listener handles a write: where `enqueuedInWrite` collects what it enqueues. */
  let inListener = 0;
  let inWrite: { queue: string; data: object[] }[] = [];

  const subscriptionBody = (extra: Partial<Subscription> = {}, secret: string | undefined = SECRET): Subscription => ({
    resourceType: 'Subscription',
    status: 'requested',
    reason: 'new referrals for us',
    criteria: `Task?owner=Organization/${ORG_B}&status=requested`,
    channel: {
      type: 'rest-hook',
      endpoint,
      payload: 'application/fhir+json',
      header: ['X-Tenant: b'],
      ...(secret ? { extension: [{ url: SUBSCRIPTION_SECRET_URL, valueString: secret }] } : {}),
    },
    ...extra,
  });
  const task = (owner: string, forPatient = patient, extra: Partial<Task> = {}): Task => ({
    resourceType: 'Task',
    status: 'requested',
    intent: 'order',
    description: 'please review',
    owner: { reference: `Organization/${owner}` },
    for: { reference: `Patient/${forPatient}` },
    ...extra,
  });
  const created = async (res: request.Response): Promise<string> => {
    expect(res.status).toBe(201);
    return res.body.id as string;
  };
  /** The subscription as its owner reads it, once `ready` holds (or after 10 s, for the assertion to fail on). */
  const subscriptionWhen = async (ready: (s: Subscription) => boolean): Promise<Subscription> => {
    for (let i = 0; ; i++) {
      const s = (await b('get', `/fhir/Subscription/${subscription.id}`)).body as Subscription;
      if (ready(s) || i >= 100) return s;
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  /** Every pending match committed so far is judged, then every notification it made is delivered. */
  const settled = (): Promise<void> => subscriptionsSettled(t.db, 600);
  /**
   * What the matching listener queued in the write's own transaction while `write` ran: pending
   * matches, notifications, pg-boss jobs (the match job's later inserts are not counted: only calls
   * made inside the listener's handle).
   */
  const enqueuedInWrite = async <T>(write: () => Promise<T>): Promise<{ result: T; jobs: { queue: string; data: object[] }[] }> => {
    const listener = t.app.get(SubscriptionMatchingListener);
    const queue = t.app.get(JobQueue);
    const jobs: { queue: string; data: object[] }[] = [];
    inWrite = jobs;
    const handle = listener.handle.bind(listener);
    const enqueue = queue.enqueue.bind(queue);
    const spies = [
      jest.spyOn(listener, 'handle').mockImplementation(async (event) => {
        inListener++;
        try {
          return await handle(event);
        } finally {
          inListener--;
        }
      }),
      jest.spyOn(queue, 'enqueue').mockImplementation(async (tx, name, data, options) => {
        if (inListener) jobs.push({ queue: name, data: [data] });
        return enqueue(tx, name, data, options);
      }),
    ];
    try {
      return { result: await write(), jobs };
    } finally {
      for (const spy of spies) spy.mockRestore();
    }
  };

  beforeAll(async () => {
    t = await createTestApp();
    records = captureAuditRecords(t.app);
    const notifications = t.app.get(SubscriptionNotifications);
    const insertMany = notifications.insertMany.bind(notifications);
    jest.spyOn(notifications, 'insertMany').mockImplementation(async (tx, data) => {
      inserted.push(...data);
      if (inListener) inWrite.push({ queue: 'subscription_notification', data: [...data] });
      return insertMany(tx, data);
    });
    const pending = t.app.get(SubscriptionMatchesPending);
    const add = pending.add.bind(pending);
    jest.spyOn(pending, 'add').mockImplementation(async (tx, match) => {
      added.push(match);
      if (inListener) inWrite.push({ queue: 'subscription_match_pending', data: [match] });
      return add(tx, match);
    });
    const claim = pending.claim.bind(pending);
    jest.spyOn(pending, 'claim').mockImplementation(async (limit, lease) => {
      const batch = await claim(limit, lease);
      if (batch) claimed.push(batch);
      return batch;
    });
    receiver = new NotificationReceiver();
    endpoint = await receiver.start();
    [a, b, c] = await Promise.all([hospitalSender(t, ORG_A), hospitalSender(t, ORG_B), hospitalSender(t, ORG_C)]);
    patient = await created(await a('post', '/fhir/Patient').send(hiePatient()));
    const res = await b('post', '/fhir/Subscription').send(subscriptionBody());
    expect(res.status).toBe(201);
    subscription = res.body as Subscription;
  }, 120_000);

  afterAll(async () => {
    await receiver?.stop();
    await t?.close();
  });

  describe('registration', () => {
    it('sets a requested Subscription active and never returns its secret (read, search, _history, audit)', async () => {
      expect(subscription.status).toBe('active');
      expect(subscription.channel.extension).toBeUndefined();
      expect(subscription.channel.header).toEqual(['X-Tenant: b']);
      const read = await b('get', `/fhir/Subscription/${subscription.id}`);
      const search = await b('get', `/fhir/Subscription?_id=${subscription.id}`);
      const history = await b('get', `/fhir/Subscription/${subscription.id}/_history`);
      const vread = await b('get', `/fhir/Subscription/${subscription.id}/_history/1`);
      for (const res of [read, search, history, vread]) {
        expect(res.status).toBe(200);
        expect(JSON.stringify(res.body)).not.toContain(SECRET);
      }
      expect(read.body.status).toBe('active');
      expect((search.body as Bundle).total ?? search.body.entry.length).toBe(1);
      expect(JSON.stringify(records)).not.toContain(SECRET);
      const [{ n }] = await t.db.query(`SELECT count(*)::int AS n FROM audit_event WHERE content::text LIKE $1`, [`%${SECRET}%`]);
      expect(n).toBe(0);
      const [{ stored }] = await t.db.query(`SELECT count(*)::int AS stored FROM resource_history WHERE resource_type = 'Subscription' AND content::text LIKE $1`, [`%${SECRET}%`]);
      expect(stored).toBe(0);
      // Kept where only the worker reads it.
      expect(await t.db.query(`SELECT secret FROM subscription_registration WHERE id = $1`, [subscription.id])).toEqual([{ secret: SECRET }]);
    });

    it('lists failing Subscriptions to admins only (GET /admin/subscriptions), without criteria or secret', async () => {
      const admin = await (await registerTestClient(t, { role: 'admin', organization: ORG_C })).token();
      const res = await request(t.http).get('/admin/subscriptions').set('Authorization', `Bearer ${admin}`);
      expect(res.status).toBe(200);
      expect(Array.isArray(res.body.subscriptions)).toBe(true);
      const refused = await b('get', '/admin/subscriptions');
      expect(refused.status).toBe(403);
      expect(refused.body.issue[0].code).toBe('forbidden');
    });

    it('is readable by its owning organization only', async () => {
      expect((await c('get', `/fhir/Subscription/${subscription.id}`)).status).toBe(404);
      expect((await a('get', `/fhir/Subscription?_id=${subscription.id}`)).body.entry).toBeUndefined();
    });

    it.each([
      ['https://hooks.elsewhere.example/fhir/x', 'Subscription.channel.endpoint', 'business-rule'],
      ['https://hooks.allowed.example.evil/fhir/x', 'Subscription.channel.endpoint', 'business-rule'],
      ['http://169.254.169.254/latest/meta-data', 'Subscription.channel.endpoint', 'business-rule'],
    ])('refuses the endpoint %s (422 naming %s), storing nothing', async (bad, where, code) => {
      const before = (await b('get', '/fhir/Subscription?_summary=count')).body.total;
      const res = await b('post', '/fhir/Subscription').send(subscriptionBody({ channel: { type: 'rest-hook', endpoint: bad } }));
      expect(res.status).toBe(422);
      expect(res.body.issue[0]).toMatchObject({ code, expression: [where] });
      expect((await b('get', '/fhir/Subscription?_summary=count')).body.total).toBe(before);
    });

    it.each([
      [['X-Tenant: b\r\nHost: internal.example'], 0],
      [['X-Tenant: b', 'no colon here'], 1],
      [['X-Notification-Id: forged'], 0],
    ])('refuses the channel.header lines %j (422 naming the line), storing nothing', async (header, line) => {
      const before = (await b('get', '/fhir/Subscription?_summary=count')).body.total;
      const body = subscriptionBody();
      const res = await b('post', '/fhir/Subscription').send({ ...body, channel: { ...body.channel, header } });
      expect(res.status).toBe(422);
      expect(res.body.issue[0]).toMatchObject({ code: 'invalid', expression: [`Subscription.channel.header[${line}]`] });
      expect((await b('get', '/fhir/Subscription?_summary=count')).body.total).toBe(before);
    });

    it('refuses a Subscription written with break-the-glass (403), storing nothing', async () => {
      const glass = await (await registerTestClient(t, { role: 'hospital', organization: ORG_B, purposes: ['TREAT', 'ETREAT'] })).token('system/*.cruds', 'ETREAT');
      const before = (await b('get', '/fhir/Subscription?_summary=count')).body.total;
      const res = await request(t.http).post('/fhir/Subscription').set('Authorization', `Bearer ${glass}`).set('X-Break-Glass-Reason', 'unconscious patient').set('Content-Type', FHIR_JSON).send(subscriptionBody());
      expect(res.status).toBe(403);
      expect(res.body.issue[0]).toMatchObject({ code: 'forbidden', diagnostics: 'A Subscription may not be written with break-the-glass (purpose ETREAT)' });
      expect((await b('get', '/fhir/Subscription?_summary=count')).body.total).toBe(before);
    });

    it('accepts an allow-listed endpoint', async () => {
      const res = await b('post', '/fhir/Subscription').send(subscriptionBody({ status: 'off', channel: { type: 'rest-hook', endpoint: 'https://hooks.allowed.example/fhir/b' } }, undefined));
      expect(res.status).toBe(201);
      expect(res.body.status).toBe('off');
    });

    it.each([
      [{ criteria: 'NotAType?x=1' }, 'Subscription.criteria'],
      [{ criteria: 'Task?no-such-param=1' }, 'Subscription.criteria'],
      [{ channel: { type: 'websocket' as const } }, 'Subscription.channel.type'],
    ])('refuses %j with 422 naming %s', async (extra, where) => {
      const res = await b('post', '/fhir/Subscription').send(subscriptionBody(extra as Partial<Subscription>));
      expect(res.status).toBe(422);
      expect(res.body.issue[0].expression).toEqual([where]);
    });
  });

  describe('delivery', () => {
    it('notifies the owner of a matching Task create and update, signed and with a stable id, audited as a disclosure', async () => {
      const id = await created(await a('post', '/fhir/Task').send(task(ORG_B)));
      await created(await a('post', '/fhir/Task').send(task(ORG_C))); // another owner: no match
      await receiver.waitFor(() => receiver.delivered(subscription.id).length >= 1);
      const current = (await a('get', `/fhir/Task/${id}`)).body as Task;
      expect((await a('put', `/fhir/Task/${id}`).send({ ...current, description: 'please review soon' })).status).toBe(200);
      await receiver.waitFor(() => receiver.delivered(subscription.id).length >= 2);
      await settled();
      const got = receiver.delivered(subscription.id);
      expect(got).toHaveLength(2);
      expect(got.map((n) => JSON.parse(n.body) as Task).map((x) => [x.id, x.description])).toEqual([
        [id, expect.stringMatching(/^please review/)],
        [id, 'please review soon'],
      ]);
      expect(new Set(got.map((n) => n.id)).size).toBe(2);
      for (const n of got) {
        expect(n.headers['content-type']).toBe('application/fhir+json');
        expect(n.headers['x-tenant']).toBe('b');
        expect(signatureValid(SECRET, n.headers['x-signature'] as string, n.body)).toBe(true);
        expect(signatureValid('another-secret-0123456789', n.headers['x-signature'] as string, n.body)).toBe(false);
      }
      const disclosures = records.filter((r) => r.subtype === 'subscription-notification' && r.entities[0]?.reference === `Task/${id}`);
      expect(disclosures.length).toBeGreaterThanOrEqual(2);
      expect(disclosures[0]).toMatchObject({ outcome: 'success', principal: expect.objectContaining({ organization: ORG_B }), patients: [patient] });
      expect(disclosures[0].accessBasis[0]).toContain(`Subscription/${subscription.id}`);
    });

    it('turns a Subscription off at its end: one written past its end is stored off, one whose end has passed matches nothing', async () => {
      const withCode = (code: string, end?: string) => subscriptionBody({ criteria: `Task?owner=Organization/${ORG_B}&code=${code}`, ...(end ? { end } : {}) });
      const past = await b('post', '/fhir/Subscription').send(withCode('ended-past', '2020-01-01T00:00:00Z'));
      expect([past.status, past.body.status]).toEqual([201, 'off']);
      const soon = await b('post', '/fhir/Subscription').send(withCode('ended-soon', new Date(Date.now() + 1500).toISOString()));
      expect([soon.status, soon.body.status]).toEqual([201, 'active']);
      const open = await b('post', '/fhir/Subscription').send(withCode('ended-never'));
      expect([open.status, open.body.status]).toEqual([201, 'active']);
      await new Promise((r) => setTimeout(r, 1600));
      for (const code of ['ended-past', 'ended-soon', 'ended-never']) await created(await a('post', '/fhir/Task').send(task(ORG_B, patient, { code: { coding: [{ code }] } })));
      await receiver.waitFor(() => receiver.delivered(open.body.id).length >= 1);
      await settled();
      expect([receiver.delivered(past.body.id).length, receiver.delivered(soon.body.id).length, receiver.delivered(open.body.id).length]).toEqual([0, 0, 1]);
    });

    it('leaves out a stored channel.header line the write check refuses (a registration stored before the check): X-Notification-Id stays the server\'s', async () => {
      const res = await b('post', '/fhir/Subscription').send(subscriptionBody({ criteria: `Task?owner=Organization/${ORG_B}&code=old-headers` }));
      expect(res.status).toBe(201);
      await t.db.query(`UPDATE subscription_registration SET headers = $2 WHERE id = $1`, [res.body.id, ['X-Notification-Id: forged', 'no colon', 'X-Tenant: b']]);
      await created(await a('post', '/fhir/Task').send(task(ORG_B, patient, { code: { coding: [{ code: 'old-headers' }] } })));
      await receiver.waitFor(() => receiver.delivered(res.body.id).length >= 1);
      const [n] = receiver.delivered(res.body.id);
      expect([n.headers['x-notification-id'], n.headers['x-tenant']]).toEqual([expect.stringMatching(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/), 'b']);
    });

    it('sends a notification without body when the Subscription has no payload', async () => {
      const res = await b('post', '/fhir/Subscription').send(subscriptionBody({ criteria: `Task?owner=Organization/${ORG_B}&code=headers-only`, channel: { type: 'rest-hook', endpoint } }, undefined));
      expect(res.status).toBe(201);
      const sub = res.body as Subscription;
      const id = await created(await a('post', '/fhir/Task').send(task(ORG_B, patient, { code: { coding: [{ code: 'headers-only' }] } })));
      await receiver.waitFor(() => receiver.delivered(sub.id).length >= 1);
      const [n] = receiver.delivered(sub.id);
      expect(n.body).toBe('');
      expect(n.headers['content-type']).toBeUndefined();
      expect(n.headers['x-signature']).toBeUndefined();
      expect(n.headers['x-subscription-id']).toBe(sub.id);
      expect(id).toBeTruthy();
    });

    it('never sends a resource the subscriber may not read (a patient deny Consent)', async () => {
      const denied = await created(await a('post', '/fhir/Patient').send(hiePatient()));
      await created(await a('post', '/fhir/Consent').send(consentResource(denied)));
      const hidden = await created(await a('post', '/fhir/Task').send(task(ORG_B, denied)));
      expect((await b('get', `/fhir/Task/${hidden}`)).status).toBe(404);
      const visible = await created(await a('post', '/fhir/Task').send(task(ORG_B)));
      await receiver.waitFor(() => receiver.delivered(subscription.id).some((n) => (JSON.parse(n.body) as Task).id === visible));
      await settled();
      expect(receiver.attempts.filter((n) => n.body.includes(hidden))).toEqual([]);
      expect(inserted.filter((n) => n.id === hidden)).toEqual([]);
    });

    it('decides what it can in the write: criteria the written Task cannot satisfy are left out; criteria decided in memory leave only the access to the match job; the rest go to the matching statement in the write', async () => {
      const rejected = (await b('post', '/fhir/Subscription').send(subscriptionBody({ criteria: `Task?owner=Organization/${ORG_B}&code=prefilter-other` }))).body as Subscription;
      const undecided = (await b('post', '/fhir/Subscription').send(subscriptionBody({ criteria: `Task?owner=Organization/${ORG_B}&authored-on=2001-02-03` }))).body as Subscription;
      expect([rejected.status, undecided.status]).toEqual(['active', 'active']);
      try {
        await settled();
        const { result: id, jobs } = await enqueuedInWrite(async () => created(await a('post', '/fhir/Task').send(task(ORG_B, patient, { authoredOn: '2001-02-03', code: { coding: [{ code: 'prefilter-this' }] } }))));
        // One pending match; owner and status decided in memory (only B's access left to the match
        // job); authored-on is not decided in memory: tested (with B's access) by the statement in the write.
        expect(jobs).toEqual([{ queue: 'subscription_match_pending', data: [{ resourceType: 'Task', id, versionId: '1', candidates: [subscription.id!], matched: [undecided.id!] } satisfies MatchJobData] }]);
        await receiver.waitFor(() => receiver.delivered(undecided.id).length >= 1 && receiver.delivered(subscription.id).some((n) => (JSON.parse(n.body) as Task).id === id));
        await settled();
        expect(receiver.delivered(rejected.id)).toEqual([]);
        expect(receiver.delivered(undecided.id).map((n) => (JSON.parse(n.body) as Task).id)).toEqual([id]);
      } finally {
        await b('delete', `/fhir/Subscription/${rejected.id}`);
        await b('delete', `/fhir/Subscription/${undecided.id}`);
      }
    });

    it('writes the pending match row in the same statement as the write\'s audit rows, right before COMMIT: a matching Subscription costs a write no round trip of its own', async () => {
      await settled();
      const statements: string[][] = [];
      const prepare = StorageSession.prototype.prepareCommit;
      const spy = jest.spyOn(StorageSession.prototype, 'prepareCommit').mockImplementation(async function (this: StorageSession) {
        const query = jest.spyOn(this.tx, 'query');
        try {
          return await prepare.call(this);
        } finally {
          statements.push(query.mock.calls.map(([text]) => text));
          query.mockRestore();
        }
      });
      let id: string;
      try {
        id = await created(await a('post', '/fhir/Task').send(task(ORG_B)));
      } finally {
        spy.mockRestore();
      }
      // The create's session: one statement before COMMIT, carrying both inserts.
      const carrying = statements.filter((list) => list.some((text) => text.includes('subscription_match_pending')));
      expect(carrying).toHaveLength(1);
      expect(carrying[0]).toHaveLength(1);
      expect(carrying[0][0]).toMatch(/^WITH d0 AS \(INSERT INTO subscription_match_pending .*\),\nd1 AS \(INSERT INTO audit_pending /s);
      const [{ n }] = await t.db.query(`SELECT count(*)::int AS n FROM audit_event WHERE action = 'C' AND $1 = ANY(entities)`, [`Task/${id}`]);
      expect(n).toBe(1);
      await receiver.waitFor(() => receiver.delivered(subscription.id).some((x) => (JSON.parse(x.body) as Task).id === id));
    });

    it('commits a write with exactly one pending match (not a notification per Subscription); the match job inserts one notification per subscriber that may read the version, none for one that may not', async () => {
      // Two more of B's Subscriptions and one of C's, all matching the Task below in memory.
      const more = [
        (await b('post', '/fhir/Subscription').send(subscriptionBody({ criteria: `Task?owner=Organization/${ORG_B}&code=fan-out` }))).body as Subscription,
        (await b('post', '/fhir/Subscription').send(subscriptionBody({ criteria: `Task?code=fan-out` }))).body as Subscription,
      ];
      const ofC = (await c('post', '/fhir/Subscription').send(subscriptionBody({ criteria: `Task?code=fan-out` }))).body as Subscription;
      expect([...more, ofC].map((x) => x.status)).toEqual(['active', 'active', 'active']);
      // The patient denies C (any purpose): C may not read the Task, B may.
      const deniesC = await created(await a('post', '/fhir/Patient').send(hiePatient()));
      await created(await a('post', '/fhir/Consent').send(consentResource(deniesC, { type: 'deny', actor: [{ role: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'IRCP' }] }, reference: { reference: `Organization/${ORG_C}` } }] })));
      try {
        await settled();
        const { result: id, jobs } = await enqueuedInWrite(async () => created(await a('post', '/fhir/Task').send(task(ORG_B, deniesC, { code: { coding: [{ code: 'fan-out' }] } }))));
        expect((await b('get', `/fhir/Task/${id}`)).status).toBe(200);
        expect((await c('get', `/fhir/Task/${id}`)).status).toBe(404);
        // The write's transaction inserted one pending match, and no notification.
        expect(jobs).toHaveLength(1);
        expect(jobs[0].queue).toBe('subscription_match_pending');
        expect((jobs[0].data[0] as MatchJobData).candidates.sort()).toEqual([subscription.id, ...more.map((x) => x.id), ofC.id].sort());
        await settled();
        // One pending match for the write, judged in one claimed batch, and gone once judged.
        expect(added.filter((m) => m.id === id)).toHaveLength(1);
        expect(claimed.flatMap((batch) => batch.matches).filter((m) => m.id === id)).toHaveLength(1);
        const [{ left }] = await t.db.query(`SELECT count(*)::int AS left FROM subscription_match_pending WHERE resource_id = $1`, [id]);
        expect(left).toBe(0);
        // The match job's notifications: B's three Subscriptions, each with its stable id; none for C.
        const notified = inserted.filter((n) => n.id === id).map((n) => ({ id: notificationId(n), subscription: n.subscriptionId })).sort((x, y) => (x.subscription < y.subscription ? -1 : 1));
        const expected = [subscription.id!, ...more.map((x) => x.id!)].sort().map((sub) => ({ id: notificationId({ subscriptionId: sub, resourceType: 'Task', id, versionId: '1' }), subscription: sub }));
        expect(notified).toEqual(expected);
        await receiver.waitFor(() => more.every((x) => receiver.delivered(x.id).length === 1));
        expect(receiver.delivered(ofC.id)).toEqual([]);
        expect(receiver.delivered(more[0].id).map((n) => n.id)).toEqual([notificationId({ subscriptionId: more[0].id!, resourceType: 'Task', id, versionId: '1' })]);
      } finally {
        for (const x of more) await b('delete', `/fhir/Subscription/${x.id}`);
        await c('delete', `/fhir/Subscription/${ofC.id}`);
      }
    });

    it('enqueues nothing when no criterion matches the write', async () => {
      await settled();
      const { jobs } = await enqueuedInWrite(async () => created(await a('post', '/fhir/Task').send(task(ORG_C))));
      expect(jobs).toEqual([]);
    });

    it('judges a claimed batch twice without a second notification: its rows were deleted with the first run, fenced to the lease', async () => {
      await settled();
      const id = await created(await a('post', '/fhir/Task').send(task(ORG_B)));
      await receiver.waitFor(() => receiver.delivered(subscription.id).some((n) => (JSON.parse(n.body) as Task).id === id));
      await settled();
      const batch = claimed.find((x) => x.matches.some((m) => m.id === id))!;
      expect(batch.matches.filter((m) => m.id === id)).toHaveLength(1);
      // As if its worker ran it again after its transaction committed.
      await t.app.get(SubscriptionMatchJob).runBatch(batch);
      await settled();
      // Its rows were deleted already: the second run inserts nothing (the delivered row is gone, so ON CONFLICT alone could not tell).
      expect(inserted.filter((n) => n.id === id)).toHaveLength(1);
      expect(receiver.attempts.filter((x) => x.body.includes(`"id":"${id}"`))).toHaveLength(1);
    });

    it('checks the subscribers\' access in the match job with a generic plan: planned once per connection, not per batch, and plan_cache_mode back to auto after it', async () => {
      const search = t.app.get(SearchService);
      const ctx = await t.app.get(SystemAccess).mintFor('PUBHLTH');
      await t.app.get(StorageSessions).run({ transactional: true }, async ({ tx }) => {
        // This connection's access statements of the match job (other shapes may be there from earlier batches).
        const plans = async (): Promise<{ custom: number; generic: number }> =>
          (await tx.query(`SELECT coalesce(sum(custom_plans), 0)::int AS custom, coalesce(sum(generic_plans), 0)::int AS generic FROM pg_prepared_statements WHERE statement LIKE 'SELECT k.i, k.c, x.readable FROM %'`))[0];
        const before = await plans();
        const answers: number[][] = [];
        for (let i = 0; i < 8; i++) answers.push((await search.readableVersions([{ resourceType: 'Patient', id: patient, versionId: 1, contexts: [ctx] }], tx)).map((set) => set.size));
        // PUBHLTH may not read a hospital's patient here.
        expect(answers).toEqual(Array(8).fill([0]));
        const after = await plans();
        expect({ custom: after.custom - before.custom, generic: after.generic - before.generic }).toEqual({ custom: 0, generic: 8 });
        const [{ plan_cache_mode }] = await tx.query(`SHOW plan_cache_mode`);
        expect(plan_cache_mode).toBe('auto');
        // The generic plan probes the history by primary key per key: a plain join of the unnested
        // keys was planned as a hash of the whole history table (a sequential scan per batch).
        const [{ statement }] = await tx.query(`SELECT statement FROM pg_prepared_statements WHERE statement LIKE 'SELECT k.i, k.c, x.readable FROM %' ORDER BY prepare_time DESC LIMIT 1`);
        const plan = ((await tx.query(`EXPLAIN (GENERIC_PLAN) ${statement}`)) as { 'QUERY PLAN': string }[]).map((r) => r['QUERY PLAN']).join('\n');
        expect(plan).toMatch(/^Nested Loop .*\n\s+->  Function Scan on k .*\n\s+->  Limit .*\n\s+->  Index (Only )?Scan using \w+ on resource_history h/);
        expect(plan).not.toMatch(/Seq Scan on resource_history|Hash Join|Merge Join/);
      });
    });

    it('judges more subscribers than one statement holds in groups of READERS_PER_STATEMENT, the answers merged (match job and delivery read)', async () => {
      const id = await created(await a('post', '/fhir/Task').send(task(ORG_B)));
      const [reg] = await t.app.get(SubscriptionRegistrations).byIds([subscription.id!]);
      const owner = (await t.app.get(SubscriberAccess).contextOf(reg.principal, 'Task'))!;
      const strangers = await Promise.all(Array.from({ length: READERS_PER_STATEMENT + 8 }, () => t.app.get(SystemAccess).mintFor('PUBHLTH')));
      // The one reader that may read the Task sits in the second group.
      const contexts = [...strangers.slice(0, READERS_PER_STATEMENT + 3), owner, ...strangers.slice(READERS_PER_STATEMENT + 3)];
      await t.app.get(StorageSessions).run({ transactional: true }, async ({ tx }) => {
        const executions = async (prefix: string): Promise<number> =>
          (await tx.query(`SELECT coalesce(sum(generic_plans + custom_plans), 0)::int AS n FROM pg_prepared_statements WHERE statement LIKE $1`, [`${prefix}%`]))[0].n;
        const before = await executions('SELECT k.i, k.c, x.readable FROM ');
        const [readers] = await t.app.get(SearchService).readableVersions([{ resourceType: 'Task', id, versionId: 1, contexts }], tx);
        expect([...readers]).toEqual([owner]);
        expect((await executions('SELECT k.i, k.c, x.readable FROM ')) - before).toBe(2);
        const beforeRead = await executions('SELECT k.c, x.* FROM ');
        const read = await t.app.get(ResourceRepository).readCurrentForReaders(contexts.map((ctx) => ({ ctx, resourceType: 'Task', ids: [id] })), tx);
        expect((await executions('SELECT k.c, x.* FROM ')) - beforeRead).toBe(2);
        expect(read.size).toBe(contexts.length);
        expect([...read].filter(([, found]) => found.size).map(([ctx, found]) => [ctx === owner, [...found.keys()]])).toEqual([[true, [id]]]);
      });
    });

    it('sends nothing on delete', async () => {
      const id = await created(await a('post', '/fhir/Task').send(task(ORG_B)));
      await receiver.waitFor(() => receiver.delivered(subscription.id).some((n) => (JSON.parse(n.body) as Task).id === id));
      await settled();
      const before = receiver.attempts.length;
      expect((await a('delete', `/fhir/Task/${id}`)).status).toBe(200);
      await settled();
      expect(receiver.attempts.length).toBe(before);
    });

    it('retries a receiver down for its first attempts with backoff: writes commit meanwhile, the Subscription goes error then active, each notification arrives once by id', async () => {
      receiver.down = true;
      const ids = [await created(await a('post', '/fhir/Task').send(task(ORG_B))), await created(await a('post', '/fhir/Task').send(task(ORG_B)))];
      // The writes committed while the receiver was down.
      for (const id of ids) expect((await a('get', `/fhir/Task/${id}`)).status).toBe(200);
      const attemptsOf = (taskId: string) => receiver.attempts.filter((n) => n.body.includes(`"id":"${taskId}"`));
      await receiver.waitFor(() => ids.every((id) => attemptsOf(id).length >= 3), 60_000);
      // The worker writes the status after the attempt it counts (the receiver has seen it by then).
      const failing = await subscriptionWhen((s) => s.status === 'error');
      expect(failing.status).toBe('error');
      expect(failing.error).toMatch(/^3 deliveries in a row failed; last: the endpoint answered HTTP 503$/);
      const admin = await (await registerTestClient(t, { role: 'admin', organization: ORG_C })).token();
      const listed = (await request(t.http).get('/admin/subscriptions').set('Authorization', `Bearer ${admin}`)).body.subscriptions as { id: string; status: string; custodianOrg: string; failureCount: number }[];
      expect(listed.find((x) => x.id === subscription.id)).toMatchObject({ status: 'error', custodianOrg: ORG_B, failureCount: expect.any(Number) });
      expect(JSON.stringify(listed)).not.toContain(SECRET);
      receiver.down = false;
      await receiver.waitFor(() => ids.every((id) => attemptsOf(id).some((n) => n.answered === 204)), 60_000);
      await settled();
      for (const id of ids) {
        const attempts = attemptsOf(id);
        expect(attempts.filter((n) => n.answered === 503).length).toBeGreaterThanOrEqual(3);
        // One notification id across its retries.
        expect(new Set(attempts.map((n) => n.id)).size).toBe(1);
        // Backoff: each retry waited longer than the one before (1 s, then about 2 s).
        const gaps = attempts.slice(1).map((n, i) => n.at - attempts[i].at);
        expect(gaps[0]).toBeGreaterThanOrEqual(900);
        expect(receiver.delivered(subscription.id).filter((n) => n.id === attempts[0].id)).toHaveLength(1);
      }
      const recovered = await subscriptionWhen((s) => s.status === 'active');
      expect(recovered.status).toBe('active');
      expect(recovered.error).toBeUndefined();
      expect(JSON.stringify(recovered)).not.toContain(SECRET);
    }, 120_000);
  });
});
