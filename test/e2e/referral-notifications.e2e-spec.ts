import type { Subscription, Task } from '@medplum/fhirtypes';
import { SUBSCRIPTION_SECRET_URL } from '../../src/referrals/subscriptions/subscription-registration.listener';
import { hiePatient } from '../support/fixtures';
import { NotificationReceiver, signatureValid } from '../support/notification-receiver';
import { referByOperation, ReferralParty, referralParties, referralServiceRequest } from '../support/referrals';
import { createTestApp, TestApp } from '../support/test-app';

process.env.JOBS_POLL_SECONDS = '0.5';

const RUN = Date.now().toString(36);
const ORG_A = `rfn-a-${RUN}`; // the referring hospital (requester)
const ORG_B = `rfn-b-${RUN}`; // the receiving clinic (owner)
const SECRET_A = `a-secret-${RUN}-0123456789`;
const SECRET_B = `b-secret-${RUN}-0123456789`;

/**
 * Issue 25's closed loop end to end, with both parties learning of each step by rest-hook
 * Subscription (a local receiver started here), in an opt-in region where only the referral opens
 * A's data to B: A refers with supporting data; B is notified, reads the supporting data, accepts,
 * starts, completes with a consult note; A is notified of every step and reads the note. The same
 * with a rejection, after which B no longer reads the supporting data.
 */
describe('referral closed loop with notifications (two organizations, rest-hook receiver)', () => {
  let t: TestApp;
  let a: ReferralParty;
  let b: ReferralParty;
  let receiver: NotificationReceiver;
  let subA: string;
  let subB: string;
  let patient: string;

  const create = async (who: ReferralParty, body: Record<string, unknown>): Promise<string> => {
    const res = await who('post', `/fhir/${body.resourceType as string}`).send(body);
    expect(res.status).toBe(201);
    return res.body.id as string;
  };
  const subscribe = async (who: ReferralParty, criteria: string, secret: string): Promise<string> => {
    const body: Subscription = {
      resourceType: 'Subscription',
      status: 'requested',
      reason: 'referral worklist',
      criteria,
      channel: { type: 'rest-hook', endpoint: await endpoint, payload: 'application/fhir+json', extension: [{ url: SUBSCRIPTION_SECRET_URL, valueString: secret }] },
    };
    const res = await who('post', '/fhir/Subscription').send(body);
    expect([res.status, res.body.status]).toEqual([201, 'active']);
    return res.body.id as string;
  };
  let endpoint: Promise<string>;
  /** The Task statuses a subscription has been told of for `task`, in order of delivery (one per notification id). */
  const toldOf = (subscription: string, task: string): string[] =>
    receiver
      .delivered(subscription)
      .map((n) => JSON.parse(n.body) as Task)
      .filter((body) => body.id === task)
      .map((body) => body.status);
  /** Waits until both parties were told `task` is at `status` (each step is delivered before the next is made). */
  const bothTold = (task: string, status: string) => receiver.waitFor(() => toldOf(subA, task).at(-1) === status && toldOf(subB, task).at(-1) === status, 60_000);
  const transition = async (who: ReferralParty, id: string, change: Partial<Task>): Promise<number> => {
    const current = await who('get', `/fhir/Task/${id}`);
    expect(current.status).toBe(200);
    const res = await who('put', `/fhir/Task/${id}`).set('If-Match', `W/"${(current.body as Task).meta?.versionId}"`).send({ ...(current.body as Task), ...change });
    return res.status;
  };
  const status = async (who: ReferralParty, reference: string): Promise<number> => (await who('get', `/fhir/${reference}`)).status;

  beforeAll(async () => {
    process.env.CONSENT_BASE_POLICY = 'opt-in';
    try {
      t = await createTestApp();
    } finally {
      delete process.env.CONSENT_BASE_POLICY;
    }
    receiver = new NotificationReceiver();
    endpoint = receiver.start();
    [a, b] = await referralParties(t, [ORG_A, ORG_B]);
    patient = await create(a, hiePatient({ name: [{ family: `Looped${RUN}` }] }));
    subA = await subscribe(a, `Task?requester=Organization/${ORG_A}`, SECRET_A);
    subB = await subscribe(b, `Task?owner=Organization/${ORG_B}`, SECRET_B);
  }, 120_000);

  afterAll(async () => {
    await receiver?.stop();
    await t?.close();
  });

  it('A refers, B is notified and reads the supporting data, accepts, starts, completes with a note; A is notified of each step and reads the note', async () => {
    const supporting = await create(a, { resourceType: 'Observation', status: 'final', code: { text: 'troponin' }, subject: { reference: `Patient/${patient}` } });
    expect(await status(b, `Observation/${supporting}`)).toBe(404);

    const { sr, task } = await referByOperation(a, referralServiceRequest(patient, ORG_A, ORG_B, { supportingInfo: [{ reference: `Observation/${supporting}` }] }));
    await bothTold(task.id!, 'requested');
    // B learns of the referral from its notification alone: the Task, then its focus and the supporting data.
    const notice = receiver.delivered(subB).find((n) => (JSON.parse(n.body) as Task).id === task.id)!;
    expect(signatureValid(SECRET_B, notice.headers['x-signature'] as string, notice.body)).toBe(true);
    expect((JSON.parse(notice.body) as Task).focus?.reference).toBe(`ServiceRequest/${sr.id}`);
    const focus = await b('get', `/fhir/ServiceRequest/${sr.id}`);
    expect(focus.status).toBe(200);
    expect(focus.body.supportingInfo).toEqual([{ reference: `Observation/${supporting}` }]);
    expect(await status(b, `Observation/${supporting}`)).toBe(200);
    expect(await status(b, `Patient/${patient}`)).toBe(200);

    for (const step of ['accepted', 'in-progress'] as const) {
      expect(await transition(b, task.id!, { status: step })).toBe(200);
      await bothTold(task.id!, step);
    }
    const note = await create(b, {
      resourceType: 'DocumentReference',
      status: 'current',
      subject: { reference: `Patient/${patient}` },
      type: { text: 'consult note' },
      content: [{ attachment: { contentType: 'text/plain', data: Buffer.from('no ischaemia').toString('base64') } }],
    });
    expect(await transition(b, task.id!, { status: 'completed', output: [{ type: { text: 'consult note' }, valueReference: { reference: `DocumentReference/${note}` } }] })).toBe(200);
    await bothTold(task.id!, 'completed');

    // Every step reached A, once each (duplicates dropped by notification id), signed with A's secret.
    expect(toldOf(subA, task.id!)).toEqual(['requested', 'accepted', 'in-progress', 'completed']);
    expect(toldOf(subB, task.id!)).toEqual(['requested', 'accepted', 'in-progress', 'completed']);
    for (const n of receiver.delivered(subA)) expect(signatureValid(SECRET_A, n.headers['x-signature'] as string, n.body)).toBe(true);
    const completed = receiver.delivered(subA).map((n) => JSON.parse(n.body) as Task).find((body) => body.id === task.id && body.status === 'completed')!;
    expect(completed.output?.[0]?.valueReference?.reference).toBe(`DocumentReference/${note}`);
    expect(await status(a, `DocumentReference/${note}`)).toBe(200);
  });

  it('a rejection is notified to A, and B no longer reads the supporting data (the hidden answer)', async () => {
    const supporting = await create(a, { resourceType: 'Observation', status: 'final', code: { text: 'ecg' }, subject: { reference: `Patient/${patient}` } });
    const { task } = await referByOperation(a, referralServiceRequest(patient, ORG_A, ORG_B, { supportingInfo: [{ reference: `Observation/${supporting}` }] }));
    await bothTold(task.id!, 'requested');
    expect(await status(b, `Observation/${supporting}`)).toBe(200);

    expect(await transition(b, task.id!, { status: 'rejected', statusReason: { text: 'no capacity' } })).toBe(200);
    await bothTold(task.id!, 'rejected');
    expect(toldOf(subA, task.id!)).toEqual(['requested', 'rejected']);
    const gone = await b('get', `/fhir/Observation/${supporting}`);
    const missing = await b('get', `/fhir/Observation/nope-${RUN}`);
    expect([gone.status, gone.body.issue?.[0]?.code]).toEqual([404, 'not-found']);
    expect([missing.status, missing.body.issue?.[0]?.code]).toEqual([404, 'not-found']);
  });
});
