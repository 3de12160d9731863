import type { Bundle, Task } from '@medplum/fhirtypes';
import request from 'supertest';
import type { AuditRecord } from '../../src/fhir/pipeline/audit-record';
import { captureAuditRecords } from '../support/audit';
import { hiePatient } from '../support/fixtures';
import { referByOperation, ReferralParty, referralParties, referralServiceRequest } from '../support/referrals';
import { createTestApp, TestApp } from '../support/test-app';

const RUN = Date.now().toString(36);
const ORG_A = `rfa-a-${RUN}`; // the referring hospital (requester)
const ORG_B = `rfa-b-${RUN}`; // the receiving clinic (owner)
const ORG_C = `rfa-c-${RUN}`; // a hospital with no part in the referrals
const ACT = 'http://terminology.hl7.org/CodeSystem/v3-ActCode';

type Send = ReferralParty;

/**
 * Referral-scoped access (docs/referrals.md) in an opt-in region, where the base policy alone shares
 * nothing of A's patients with B: the referral (basis `referral`) opens the supporting data and the
 * Patient to B while it is open, and B's consult note to A; rejection ends it at once; a patient's
 * deny and a sensitive label still win.
 */
describe('referral-scoped access (opt-in region): basis referral', () => {
  let t: TestApp;
  let records: AuditRecord[];
  let a: Send;
  let b: Send;
  let c: Send;

  const create = async (who: Send, body: Record<string, unknown>): Promise<string> => {
    const res = await who('post', `/fhir/${body.resourceType as string}`).send(body);
    if (res.status !== 201) throw new Error(`create ${body.resourceType as string}: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body.id as string;
  };
  const condition = (patient: string, extra: Record<string, unknown> = {}) => ({
    resourceType: 'Condition',
    subject: { reference: `Patient/${patient}` },
    code: { text: 'stable angina' },
    clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-clinical', code: 'active' }] },
    ...extra,
  });
  const refer = (patient: string, supportingInfo: string[]) =>
    referByOperation(a, referralServiceRequest(patient, ORG_A, ORG_B, { supportingInfo: supportingInfo.map((reference) => ({ reference })) }));
  /** `who` moves the Task (read by itself) with If-Match of the version it read. */
  const transition = async (who: Send, id: string, change: Partial<Task>): Promise<request.Response> => {
    const current = await who('get', `/fhir/Task/${id}`);
    expect(current.status).toBe(200);
    return who('put', `/fhir/Task/${id}`)
      .set('If-Match', `W/"${(current.body as Task).meta?.versionId}"`)
      .send({ ...(current.body as Task), ...change });
  };
  /** Status and issue code of a read: a hidden resource answers as a missing one does. */
  const answer = async (who: Send, reference: string): Promise<[number, string | undefined]> => {
    const res = await who('get', `/fhir/${reference}`);
    return [res.status, res.status === 200 ? `${res.body.resourceType}/${res.body.id}` : res.body.issue?.[0]?.code];
  };
  const readBasis = (reference: string): string | undefined => records.filter((r) => r.kind === 'read' && r.entities.some((e) => e.reference === reference)).at(-1)?.accessBasis.at(-1);
  const hidden: [number, string] = [404, 'not-found'];
  const refs = (res: request.Response): string[] => ((res.body as Bundle).entry ?? []).map((e) => `${e.resource?.resourceType}/${e.resource?.id}`).sort();

  let patient: string;
  let supporting: string;
  let unshared: string;

  beforeAll(async () => {
    process.env.CONSENT_BASE_POLICY = 'opt-in';
    try {
      t = await createTestApp();
    } finally {
      delete process.env.CONSENT_BASE_POLICY;
    }
    records = captureAuditRecords(t.app);
    [a, b, c] = await referralParties(t, [ORG_A, ORG_B, ORG_C]);
    patient = await create(a, hiePatient({ name: [{ family: `Referred${RUN}` }] }));
    supporting = await create(a, condition(patient));
    unshared = await create(a, condition(patient, { code: { text: 'not part of the referral' } }));
  }, 120_000);

  afterAll(() => t?.close());

  it('closed loop: B reads the supporting data and the Patient (basis referral, audited naming the Task), accepts, starts, completes with a consult note; A reads the note (basis referral)', async () => {
    // Opt-in: before any referral B sees nothing of A's patient.
    expect(await answer(b, `Condition/${supporting}`)).toEqual(hidden);
    expect(await answer(b, `Patient/${patient}`)).toEqual(hidden);

    const { sr, task } = await refer(patient, [`Condition/${supporting}`]);
    records.length = 0;
    expect(await answer(b, `Condition/${supporting}`)).toEqual([200, `Condition/${supporting}`]);
    expect(readBasis(`Condition/${supporting}`)).toMatch(new RegExp(`^consent: policy opt-in \\(TREAT only where a Consent permits\\), contributors referral \\(referral\\); Condition/${supporting}: Patient/${patient} by referral \\(referral\\) Task/${task.id}$`));
    expect(await answer(b, `Patient/${patient}`)).toEqual([200, `Patient/${patient}`]);
    expect(readBasis(`Patient/${patient}`)).toMatch(new RegExp(`Patient/${patient}: Patient/${patient} by referral \\(referral\\) Task/${task.id}$`));
    // Its own referral's Task and ServiceRequest too; nothing else of the patient, and nothing for C.
    expect(await answer(b, `Task/${task.id}`)).toEqual([200, `Task/${task.id}`]);
    expect(await answer(b, `ServiceRequest/${sr.id}`)).toEqual([200, `ServiceRequest/${sr.id}`]);
    expect(await answer(b, `Condition/${unshared}`)).toEqual(hidden);
    expect(refs(await b('get', `/fhir/Condition?subject=Patient/${patient}&_total=accurate`))).toEqual([`Condition/${supporting}`]);
    for (const r of [`Condition/${supporting}`, `Patient/${patient}`, `Task/${task.id}`]) expect(await answer(c, r)).toEqual(hidden);

    for (const status of ['accepted', 'in-progress'] as const) expect((await transition(b, task.id!, { status })).status).toBe(200);
    const note = await create(b, {
      resourceType: 'DocumentReference',
      status: 'current',
      subject: { reference: `Patient/${patient}` },
      type: { text: 'consult note' },
      content: [{ attachment: { contentType: 'text/plain', data: Buffer.from('no ischaemia').toString('base64') } }],
    });
    // B's note is B's own: A sees it only once the Task names it as output.
    expect(await answer(a, `DocumentReference/${note}`)).toEqual(hidden);
    const done = await transition(b, task.id!, { status: 'completed', output: [{ type: { text: 'consult note' }, valueReference: { reference: `DocumentReference/${note}` } }] });
    expect(done.status).toBe(200);
    records.length = 0;
    expect(await answer(a, `DocumentReference/${note}`)).toEqual([200, `DocumentReference/${note}`]);
    expect(readBasis(`DocumentReference/${note}`)).toMatch(new RegExp(`DocumentReference/${note}: Patient/${patient} by referral \\(referral\\) Task/${task.id}$`));
    expect(await answer(c, `DocumentReference/${note}`)).toEqual(hidden);

    // Completed: access lasts REFERRAL_ACCESS_DAYS (30) from the closing version, then ends.
    expect(await answer(b, `Condition/${supporting}`)).toEqual([200, `Condition/${supporting}`]);
    await t.db.query(`UPDATE resource SET last_updated = last_updated - interval '31 days' WHERE resource_type = 'Task' AND id = $1`, [task.id]);
    expect(await answer(b, `Condition/${supporting}`)).toEqual(hidden);
    expect(await answer(b, `Patient/${patient}`)).toEqual(hidden);
    expect(await answer(a, `DocumentReference/${note}`)).toEqual(hidden);
    // The parties still read the referral itself (the record of what was done).
    expect(await answer(b, `Task/${task.id}`)).toEqual([200, `Task/${task.id}`]);
  });

  it('rejection ends B\'s access at once: the supporting data answers as a hidden resource does', async () => {
    const other = await create(a, hiePatient({ name: [{ family: `Rejected${RUN}` }] }));
    const data = await create(a, condition(other));
    const { task } = await refer(other, [`Condition/${data}`]);
    expect(await answer(b, `Condition/${data}`)).toEqual([200, `Condition/${data}`]);
    expect((await transition(b, task.id!, { status: 'rejected', statusReason: { text: 'no capacity' } })).status).toBe(200);
    const gone = await b('get', `/fhir/Condition/${data}`);
    const missing = await b('get', `/fhir/Condition/nope-${RUN}`);
    expect([gone.status, gone.body.issue?.[0]?.code]).toEqual([missing.status, missing.body.issue?.[0]?.code]);
    expect(gone.status).toBe(404);
    expect(await answer(b, `Patient/${other}`)).toEqual(hidden);
    expect(refs(await b('get', `/fhir/Condition?subject=Patient/${other}`))).toEqual([]);
    // A cancelled referral likewise.
    const third = await create(a, condition(other, { code: { text: 'second try' } }));
    const again = await refer(other, [`Condition/${third}`]);
    expect(await answer(b, `Condition/${third}`)).toEqual([200, `Condition/${third}`]);
    expect((await transition(a, again.task.id!, { status: 'cancelled' })).status).toBe(200);
    expect(await answer(b, `Condition/${third}`)).toEqual(hidden);
  });

  it('a patient deny Consent that names B beats the referral basis; so does a sensitive label the patient has not permitted', async () => {
    const denying = await create(a, hiePatient({ name: [{ family: `Denying${RUN}` }] }));
    const data = await create(a, condition(denying));
    await create(a, {
      resourceType: 'Consent',
      status: 'active',
      scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
      category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
      patient: { reference: `Patient/${denying}` },
      policyRule: { coding: [{ system: ACT, code: 'OPTOUT' }] },
      provision: {
        type: 'deny',
        actor: [{ role: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'IRCP' }] }, reference: { reference: `Organization/${ORG_B}` } }],
      },
    });
    await refer(denying, [`Condition/${data}`]);
    expect(await answer(b, `Condition/${data}`)).toEqual(hidden);
    expect(readBasis(`Condition/${data}`)).toMatch(new RegExp(`Condition/${data}: Patient/${denying} by Consent/[^ ]+ deny$`));
    expect(await answer(b, `Patient/${denying}`)).toEqual(hidden);

    const hiv = await create(a, condition(patient, { meta: { security: [{ system: ACT, code: 'HIV' }] }, code: { text: 'x' } }));
    const open = await create(a, condition(patient, { code: { text: 'shared with the label' } }));
    await refer(patient, [`Condition/${hiv}`, `Condition/${open}`]);
    expect(await answer(b, `Condition/${hiv}`)).toEqual(hidden);
    expect(await answer(b, `Condition/${open}`)).toEqual([200, `Condition/${open}`]);
  });

  it("opens only the referring organization's own records: supportingInfo naming another organization's data opens nothing", async () => {
    // C's record of the patient (C is its custodian); A cannot read it in this opt-in region either.
    const foreign = await create(c, condition(patient, { code: { text: "C's own" } }));
    expect(await answer(a, `Condition/${foreign}`)).toEqual(hidden);
    await refer(patient, [`Condition/${foreign}`]);
    expect(await answer(b, `Condition/${foreign}`)).toEqual(hidden);
  });
});
