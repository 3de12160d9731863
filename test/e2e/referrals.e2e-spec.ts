import type { Bundle, ServiceRequest, Task } from '@medplum/fhirtypes';
import request from 'supertest';
import type { AuditRecord } from '../../src/fhir/pipeline/audit-record';
import { captureAuditRecords } from '../support/audit';
import { hiePatient } from '../support/fixtures';
import { referByOperation, ReferralParty, referralParties, referralServiceRequest } from '../support/referrals';
import { createTestApp, TestApp } from '../support/test-app';

const RUN = Date.now().toString(36);
const ORG_A = `ref-a-${RUN}`; // the referring organization (requester)
const ORG_B = `ref-b-${RUN}`; // the receiving organization (owner)
const ORG_C = `ref-c-${RUN}`; // an organization with no part in the referral
const TASK_PROFILE = 'http://hie.example.org/fhir/StructureDefinition/hie-referral-task';
const SR_PROFILE = 'http://hie.example.org/fhir/StructureDefinition/hie-referral-servicerequest';

/** The answer to a write of a resource the writer cannot read (nothing about the referral). */
const HIDDEN = 'hidden';

type Send = ReferralParty;

describe('referrals: ServiceRequest/$refer, the Task state machine and its write policy', () => {
  let t: TestApp;
  let a: Send;
  let b: Send;
  let c: Send;
  let records: AuditRecord[];
  let patient: string;
  let condition: string;

  const serviceRequest = (extra: Partial<ServiceRequest> = {}): ServiceRequest =>
    referralServiceRequest(patient, ORG_A, ORG_B, { priority: 'urgent', supportingInfo: [{ reference: `Condition/${condition}` }], ...extra });
  const refer = (extra: Partial<ServiceRequest> = {}, note?: string) => referByOperation(a, serviceRequest(extra), note);
  /** The stored Task, then a PUT of it changed by `change`, with If-Match of its version unless told otherwise. */
  const transition = async (who: Send, id: string, change: Partial<Task>, ifMatch: string | null = 'current'): Promise<request.Response> => {
    const current = (await a('get', `/fhir/Task/${id}`)).body as Task;
    const put = who('put', `/fhir/Task/${id}`);
    if (ifMatch) put.set('If-Match', ifMatch === 'current' ? `W/"${current.meta?.versionId}"` : ifMatch);
    return put.send({ ...current, ...change });
  };
  /** A Task moved along the owner's path to `status` (from requested). */
  const taskIn = async (status: string): Promise<string> => {
    const { task } = await refer();
    const path: Record<string, string[]> = {
      requested: [],
      received: ['received'],
      accepted: ['accepted'],
      rejected: ['rejected'],
      'in-progress': ['accepted', 'in-progress'],
      'on-hold': ['accepted', 'in-progress', 'on-hold'],
      completed: ['accepted', 'in-progress', 'completed'],
      failed: ['accepted', 'in-progress', 'failed'],
      cancelled: [],
    };
    for (const s of path[status]) expect((await transition(b, task.id!, { status: s as Task['status'] })).status).toBe(200);
    if (status === 'cancelled') expect((await transition(a, task.id!, { status: 'cancelled' })).status).toBe(200);
    return task.id!;
  };
  const versions = async (id: string): Promise<number> =>
    Number((await t.db.query(`SELECT count(*) AS n FROM resource_history WHERE resource_type = 'Task' AND id = $1`, [id]))[0].n);

  beforeAll(async () => {
    t = await createTestApp();
    records = captureAuditRecords(t.app);
    [a, b, c] = await referralParties(t, [ORG_A, ORG_B, ORG_C]);
    patient = (await a('post', '/fhir/Patient').send(hiePatient({ name: [{ family: `Referral${RUN}` }] }))).body.id as string;
    condition = (
      await a('post', '/fhir/Condition').send({
        resourceType: 'Condition',
        subject: { reference: `Patient/${patient}` },
        code: { text: 'stable angina' },
        clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-clinical', code: 'active' }] },
      })
    ).body.id as string;
  }, 120_000);

  afterAll(() => t?.close());

  it('happy path: A refers with supporting data, B reads it, accepts, starts, completes with a consult note; A reads the note; each step a version, audited', async () => {
    records.length = 0;
    const { sr, task } = await refer({}, 'please see within two weeks');
    expect(sr.meta?.profile).toEqual([SR_PROFILE]);
    expect(task).toMatchObject({
      status: 'requested',
      intent: 'order',
      priority: 'urgent',
      focus: { reference: `ServiceRequest/${sr.id}` },
      for: { reference: `Patient/${patient}` },
      requester: { reference: `Organization/${ORG_A}` },
      owner: { reference: `Organization/${ORG_B}` },
      note: [{ text: 'please see within two weeks' }],
      meta: { versionId: '1', profile: [TASK_PROFILE] },
    });
    const audited = records.find((r) => r.kind === 'operation' && r.subtype === 'refer');
    expect(audited?.entities.map((e) => e.reference).sort()).toEqual([`ServiceRequest/${sr.id}`, `Task/${task.id}`].sort());
    expect(audited?.accessBasis).toContain(`write-policy: custodian-organization: create: Organization/${ORG_A} becomes the custodian`);
    // Custodian of both: A.
    expect(await t.db.query(`SELECT resource_type, custodian_org FROM resource WHERE id = ANY($1) ORDER BY 1`, [[sr.id, task.id]])).toEqual([
      { resource_type: 'ServiceRequest', custodian_org: ORG_A },
      { resource_type: 'Task', custodian_org: ORG_A },
    ]);

    // B's worklist finds it; B reads the request and its supporting data (opt-out region, TREAT).
    const worklist = await b('get', `/fhir/Task?owner=Organization/${ORG_B}&status=requested&_id=${task.id}&_include=Task:focus`);
    expect(worklist.status).toBe(200);
    expect(((worklist.body as Bundle).entry ?? []).map((e) => `${e.resource?.resourceType}/${e.resource?.id}`).sort()).toEqual([`ServiceRequest/${sr.id}`, `Task/${task.id}`]);
    expect((await b('get', `/fhir/Condition/${condition}`)).status).toBe(200);

    for (const status of ['accepted', 'in-progress'] as const) {
      records.length = 0;
      const res = await transition(b, task.id!, { status, businessStatus: { text: status } });
      expect(res.status).toBe(200);
      const write = records.find((r) => r.resourceType === 'Task' && r.kind !== 'read');
      expect(write?.accessBasis.some((l) => l.startsWith(`write-policy: referral: Task/${task.id} `) && l.includes(`by the owner Organization/${ORG_B}`))).toBe(true);
    }
    const note = await b('post', '/fhir/DocumentReference').send({
      resourceType: 'DocumentReference',
      status: 'current',
      subject: { reference: `Patient/${patient}` },
      type: { text: 'consult note' },
      content: [{ attachment: { contentType: 'text/plain', data: Buffer.from('no ischaemia').toString('base64') } }],
    });
    expect(note.status).toBe(201);
    const completed = await transition(b, task.id!, {
      status: 'completed',
      executionPeriod: { end: '2026-01-02T10:00:00Z' },
      output: [{ type: { text: 'consult note' }, valueReference: { reference: `DocumentReference/${note.body.id}` } }],
    });
    expect(completed.status).toBe(200);
    expect(completed.body.meta.versionId).toBe('4');
    expect(await versions(task.id!)).toBe(4);
    // Written-by B, custodian still A.
    expect(await t.db.query(`SELECT author_org, custodian_org FROM resource WHERE resource_type = 'Task' AND id = $1`, [task.id])).toEqual([{ author_org: ORG_B, custodian_org: ORG_A }]);

    const seen = (await a('get', `/fhir/Task/${task.id}`)).body as Task;
    expect(seen.status).toBe('completed');
    expect((await a('get', `/fhir/${seen.output?.[0].valueReference?.reference}`)).status).toBe(200);
  });

  it('the request keeps its meta (security labels, tags) and the Task carries its security labels', async () => {
    const label = { system: 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality', code: 'R' };
    const { sr, task } = await refer({ meta: { security: [label], tag: [{ system: 'http://example.org/tags', code: 'cardio' }] } });
    expect(sr.meta).toMatchObject({ profile: [SR_PROFILE], security: [label], tag: [{ system: 'http://example.org/tags', code: 'cardio' }], versionId: '1' });
    expect(task.meta).toMatchObject({ profile: [TASK_PROFILE], security: [label], versionId: '1' });
    expect(task.meta?.tag).toBeUndefined();
    expect(await t.db.query(`SELECT resource_type, security_labels FROM resource WHERE id = ANY($1) ORDER BY 1`, [[sr.id, task.id]])).toEqual([
      { resource_type: 'ServiceRequest', security_labels: [`${label.system}|R`] },
      { resource_type: 'Task', security_labels: [`${label.system}|R`] },
    ]);
  });

  it('a referral is created only by $refer, active and requested; a draft request, another requester, a self-referral or a missing performer are refused, nothing stored', async () => {
    const before = Number((await t.db.query(`SELECT count(*) AS n FROM resource WHERE resource_type IN ('Task', 'ServiceRequest')`))[0].n);
    const draft = await a('post', '/fhir/ServiceRequest/$refer').send({ resourceType: 'Parameters', parameter: [{ name: 'serviceRequest', resource: serviceRequest({ status: 'draft' }) }] });
    expect(draft.status).toBe(422);
    expect(draft.body.issue[0]).toMatchObject({ code: 'business-rule', expression: ['serviceRequest.status'] });
    const foreign = await c('post', '/fhir/ServiceRequest/$refer').send({ resourceType: 'Parameters', parameter: [{ name: 'serviceRequest', resource: serviceRequest() }] });
    expect(foreign.status).toBe(422);
    expect(foreign.body.issue[0].expression).toEqual(['serviceRequest.requester']);
    const nowhere = await a('post', '/fhir/ServiceRequest/$refer').send({
      resourceType: 'Parameters',
      parameter: [{ name: 'serviceRequest', resource: serviceRequest({ performer: [{ reference: `Organization/nowhere-${RUN}` }] }) }],
    });
    expect(nowhere.status).toBe(422);
    expect(nowhere.body.issue[0].code).toBe('not-found');
    const self = await a('post', '/fhir/ServiceRequest/$refer').send({
      resourceType: 'Parameters',
      parameter: [{ name: 'serviceRequest', resource: serviceRequest({ performer: [{ reference: `Organization/${ORG_A}` }] }) }],
    });
    expect(self.status).toBe(422);
    expect(self.body.issue[0]).toMatchObject({ code: 'business-rule', expression: ['serviceRequest.performer'] });
    // The profile: a reason is required.
    const noReason = await a('post', '/fhir/ServiceRequest/$refer').send({ resourceType: 'Parameters', parameter: [{ name: 'serviceRequest', resource: serviceRequest({ reasonCode: undefined }) }] });
    expect(noReason.status).toBe(422);
    const missing = await a('post', '/fhir/ServiceRequest/$refer').send({ resourceType: 'Parameters', parameter: [] });
    expect(missing.status).toBe(400);
    expect(missing.body.issue[0].expression).toEqual(['serviceRequest']);
    // A referral Task written directly (any status: draft, ready, requested) is refused.
    for (const status of ['draft', 'ready', 'requested']) {
      const direct = await a('post', '/fhir/Task').send({
        resourceType: 'Task',
        meta: { profile: [TASK_PROFILE] },
        status,
        intent: 'order',
        authoredOn: '2026-01-01',
        focus: { reference: 'ServiceRequest/x' },
        for: { reference: `Patient/${patient}` },
        requester: { reference: `Organization/${ORG_A}` },
        owner: { reference: `Organization/${ORG_B}` },
      });
      expect(direct.status).toBe(422);
      expect(direct.body.issue[0].code).toBe('business-rule');
    }
    expect(Number((await t.db.query(`SELECT count(*) AS n FROM resource WHERE resource_type IN ('Task', 'ServiceRequest')`))[0].n)).toBe(before);
  });

  // Illegal transitions and wrong parties: the exact status, and the OperationOutcome names the
  // current state and the transitions that party may make.
  const cases: { name: string; from: string; who: 'a' | 'b' | 'c'; change: Partial<Task>; status: number; code: string; names: string }[] = [
    { name: 'owner skips acceptance', from: 'requested', who: 'b', change: { status: 'in-progress' }, status: 422, code: 'business-rule', names: 'is requested; the owner (Organization/%B) may make: received, accepted, rejected' },
    { name: 'owner completes before starting', from: 'accepted', who: 'b', change: { status: 'completed' }, status: 422, code: 'business-rule', names: 'is accepted; the owner (Organization/%B) may make: in-progress' },
    { name: 'owner re-accepts a rejected referral', from: 'rejected', who: 'b', change: { status: 'accepted' }, status: 422, code: 'business-rule', names: 'is rejected; the owner (Organization/%B) may make: no transition' },
    { name: 'owner reopens a completed referral', from: 'completed', who: 'b', change: { status: 'in-progress' }, status: 422, code: 'business-rule', names: 'is completed; the owner (Organization/%B) may make: no transition' },
    { name: 'owner completes from on-hold', from: 'on-hold', who: 'b', change: { status: 'completed' }, status: 422, code: 'business-rule', names: 'is on-hold; the owner (Organization/%B) may make: in-progress' },
    { name: 'owner moves back to requested', from: 'accepted', who: 'b', change: { status: 'requested' }, status: 422, code: 'business-rule', names: 'is accepted; the owner (Organization/%B) may make: in-progress' },
    { name: 'owner sets ready', from: 'requested', who: 'b', change: { status: 'ready' }, status: 422, code: 'business-rule', names: 'may make: received, accepted, rejected' },
    { name: 'owner changes the owner', from: 'requested', who: 'b', change: { owner: { reference: `Organization/${ORG_C}` } }, status: 422, code: 'business-rule', names: 'Task.owner cannot change' },
    { name: 'owner changes focus with a transition', from: 'requested', who: 'b', change: { status: 'accepted', focus: { reference: 'ServiceRequest/other' } }, status: 422, code: 'business-rule', names: 'Task.focus cannot change' },
    { name: 'owner changes the patient', from: 'accepted', who: 'b', change: { for: { reference: 'Patient/other' } }, status: 422, code: 'business-rule', names: 'Task.for cannot change' },
    { name: 'requester cancels a completed referral', from: 'completed', who: 'a', change: { status: 'cancelled' }, status: 422, code: 'business-rule', names: 'is completed; the requester (Organization/%A) may make: entered-in-error' },
    { name: 'requester cancels a failed referral', from: 'failed', who: 'a', change: { status: 'cancelled' }, status: 422, code: 'business-rule', names: 'is failed; the requester (Organization/%A) may make: entered-in-error' },
    { name: 'owner edits a completed referral', from: 'completed', who: 'b', change: { businessStatus: { text: 'late note' } }, status: 422, code: 'business-rule', names: 'the referral is closed; only its status may change. Task/' },
    { name: 'requester drops the referral profile (then the custodian would own it)', from: 'requested', who: 'a', change: { meta: { profile: [] } }, status: 422, code: 'business-rule', names: 'Task.meta.profile must keep' },
    { name: 'owner drops the profile with a legal transition', from: 'requested', who: 'b', change: { status: 'accepted', meta: {} }, status: 422, code: 'business-rule', names: 'Task.meta.profile must keep' },
    { name: 'requester changes the requester', from: 'requested', who: 'a', change: { requester: { reference: `Organization/${ORG_C}` } }, status: 422, code: 'business-rule', names: 'Task.requester cannot change' },
    { name: 'requester accepts for the owner', from: 'requested', who: 'a', change: { status: 'accepted' }, status: 403, code: 'forbidden', names: 'is requested; the requester (Organization/%A) may make: cancelled, entered-in-error' },
    { name: 'requester completes for the owner', from: 'in-progress', who: 'a', change: { status: 'completed' }, status: 403, code: 'forbidden', names: 'is in-progress; the requester (Organization/%A) may make: cancelled, entered-in-error' },
    { name: 'requester attaches output', from: 'in-progress', who: 'a', change: { output: [{ type: { text: 'x' }, valueString: 'x' }] }, status: 403, code: 'forbidden', names: "Task.output is the owner's to change" },
    { name: 'owner cancels', from: 'accepted', who: 'b', change: { status: 'cancelled' }, status: 403, code: 'forbidden', names: 'is accepted; the owner (Organization/%B) may make: in-progress' },
    { name: 'owner marks entered-in-error', from: 'completed', who: 'b', change: { status: 'entered-in-error' }, status: 403, code: 'forbidden', names: 'is completed; the owner (Organization/%B) may make: no transition' },
    { name: 'owner edits the note', from: 'requested', who: 'b', change: { note: [{ text: 'mine' }] }, status: 403, code: 'forbidden', names: "Task.note is the requester's to change" },
    // A third organization cannot read a referral (its parties only): the one answer of any hidden resource.
    { name: 'a third organization accepts', from: 'requested', who: 'c', change: { status: 'accepted' }, status: 403, code: 'forbidden', names: HIDDEN },
    { name: 'a third organization cancels', from: 'in-progress', who: 'c', change: { status: 'cancelled' }, status: 403, code: 'forbidden', names: HIDDEN },
  ];

  it.each(cases)('$name ($from): $status $code', async ({ from, who, change, status, code, names }) => {
    const id = await taskIn(from);
    const count = await versions(id);
    const res = await transition({ a, b, c }[who], id, change);
    expect(res.status).toBe(status);
    expect(res.body.issue[0].code).toBe(code);
    if (names === HIDDEN) {
      expect(res.body.issue[0].diagnostics).toBe(`Task/${id} is not a resource this client may change`);
    } else {
      expect(res.body.issue[0].diagnostics).toContain(names.replace('%A', ORG_A).replace('%B', ORG_B).replace('%C', ORG_C));
      expect(res.body.issue[0].diagnostics).toContain(`Task/${id} is ${from}`);
    }
    expect(await versions(id)).toBe(count);
  });

  it('a transition without If-Match is 412 naming the state; a stale If-Match is 412; deleting a referral is 403 (cancel it)', async () => {
    const id = await taskIn('requested');
    const bare = await transition(b, id, { status: 'accepted' }, null);
    expect(bare.status).toBe(412);
    expect(bare.body.issue[0].diagnostics).toContain(`Task/${id} is requested; the owner (Organization/${ORG_B}) may make: received, accepted, rejected`);
    expect((await transition(b, id, { status: 'accepted' }, 'W/"7"')).status).toBe(412);
    for (const who of [a, b]) {
      const del = await who('delete', `/fhir/Task/${id}`);
      expect(del.status).toBe(403);
      expect(del.body.issue[0].diagnostics).toContain('a referral is not deleted; the requester cancels it');
    }
    expect(await versions(id)).toBe(1);
    // The requester cancels; its note edit is allowed (with If-Match), the owner's transitions end.
    expect((await transition(a, id, { note: [{ text: 'patient moved away' }] })).status).toBe(200);
    expect((await transition(a, id, { status: 'cancelled' })).status).toBe(200);
    expect((await transition(b, id, { status: 'accepted' })).status).toBe(422);
  });

  it('the ServiceRequest: only its requester changes its note; the performer and others are refused; it is not deleted', async () => {
    const { sr } = await refer();
    const put = (who: Send, change: Partial<ServiceRequest>) =>
      who('put', `/fhir/ServiceRequest/${sr.id}`).set('If-Match', `W/"${sr.meta?.versionId}"`).send({ ...sr, ...change });
    expect((await put(b, { note: [{ text: 'x' }] })).status).toBe(403);
    expect((await put(c, { note: [{ text: 'x' }] })).status).toBe(403);
    const other = await put(a, { priority: 'routine' });
    expect(other.status).toBe(422);
    expect(other.body.issue[0].diagnostics).toContain('ServiceRequest.priority cannot change');
    expect((await a('delete', `/fhir/ServiceRequest/${sr.id}`)).status).toBe(403);
    expect((await put(a, { note: [{ text: 'fasting results attached' }] })).status).toBe(200);
  });

  it('a referral hidden from a third organization (the patient denies it): its writes get the one 403 of any hidden resource', async () => {
    const denying = (await a('post', '/fhir/Patient').send(hiePatient({ name: [{ family: `Denying${RUN}` }] }))).body.id as string;
    const consent = await a('post', '/fhir/Consent').send({
      resourceType: 'Consent',
      status: 'active',
      scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
      category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
      patient: { reference: `Patient/${denying}` },
      policyRule: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'OPTOUT' }] },
      provision: {
        type: 'deny',
        actor: [{ role: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'IRCP' }] }, reference: { reference: `Organization/${ORG_C}` } }],
      },
    });
    expect(consent.status).toBe(201);
    const { task } = await refer({ subject: { reference: `Patient/${denying}` }, supportingInfo: undefined });
    expect((await c('get', `/fhir/Task/${task.id}`)).status).toBe(404);
    const hidden = await c('put', `/fhir/Task/${task.id}`).set('If-Match', 'W/"1"').send({ ...task, status: 'accepted' });
    const missing = await c('put', `/fhir/Task/nope-${RUN}`).set('If-Match', 'W/"1"').send({ ...task, id: `nope-${RUN}`, status: 'accepted' });
    const unrelated = await c('delete', `/fhir/Task/${task.id}`);
    expect([hidden.status, unrelated.status]).toEqual([403, 403]);
    expect(hidden.body.issue[0].diagnostics).toBe(`Task/${task.id} is not a resource this client may change`);
    expect(hidden.body.issue[0].diagnostics).not.toContain('requested');
    // An unused id with If-Match is 412 for anyone (R4 update-as-create needs no version); it says nothing of the referral.
    expect(missing.status).toBe(412);
    // B, the owner, still reads it and accepts.
    expect((await transition(b, task.id!, { status: 'accepted' })).status).toBe(200);
  });

  it('the same rules on every write path: a JSON Patch and a transaction Bundle entry transition with If-Match; without it 412, a wrong one 422', async () => {
    const id = await taskIn('requested');
    const patch = (ops: unknown[], ifMatch?: string) => {
      const req = b('patch', `/fhir/Task/${id}`).set('Content-Type', 'application/json-patch+json');
      if (ifMatch) req.set('If-Match', ifMatch);
      return req.send(JSON.stringify(ops));
    };
    expect((await patch([{ op: 'replace', path: '/status', value: 'accepted' }])).status).toBe(412);
    const wrong = await patch([{ op: 'replace', path: '/status', value: 'completed' }], 'W/"1"');
    expect(wrong.status).toBe(422);
    expect(wrong.body.issue[0].diagnostics).toContain(`Task/${id} is requested; the owner (Organization/${ORG_B}) may make: received, accepted, rejected`);
    expect((await patch([{ op: 'replace', path: '/status', value: 'accepted' }], 'W/"1"')).status).toBe(200);

    const current = (await b('get', `/fhir/Task/${id}`)).body as Task;
    const bundle = (status: string) => ({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [{ resource: { ...current, status }, request: { method: 'PUT', url: `Task/${id}`, ifMatch: 'W/"2"' } }],
    });
    const refused = await b('post', '/fhir').send(bundle('completed'));
    expect(refused.status).toBe(422);
    expect(JSON.stringify(refused.body)).toContain(`Task/${id} is accepted; the owner (Organization/${ORG_B}) may make: in-progress`);
    const started = await b('post', '/fhir').send(bundle('in-progress'));
    expect(started.status).toBe(200);
    expect(started.body.entry[0].response.status).toMatch(/^200/);
    expect(await versions(id)).toBe(3);
  });

  it('two concurrent transitions with the same If-Match: one wins, the other gets 412', async () => {
    const id = await taskIn('requested');
    const current = (await b('get', `/fhir/Task/${id}`)).body as Task;
    const send = (status: Task['status']) => b('put', `/fhir/Task/${id}`).set('If-Match', 'W/"1"').send({ ...current, status });
    const results = await Promise.all([send('accepted'), send('rejected')]);
    expect(results.map((r) => r.status).sort()).toEqual([200, 412]);
    const winner = results.find((r) => r.status === 200)?.body as Task;
    expect(((await b('get', `/fhir/Task/${id}`)).body as Task).status).toBe(winner.status);
    expect(await versions(id)).toBe(2);
  });

  it('who reads a referral: its Task and ServiceRequest by A (custodian) and B (owner) only; a third hospital with TREAT in this opt-out region by no path', async () => {
    const { sr, task } = await refer();
    const refs = (res: request.Response): string[] => ((res.body as Bundle).entry ?? []).map((e) => `${e.resource?.resourceType}/${e.resource?.id}`).sort();
    const reads = async (who: Send) => ({
      task: (await who('get', `/fhir/Task/${task.id}`)).status,
      serviceRequest: (await who('get', `/fhir/ServiceRequest/${sr.id}`)).status,
      vread: (await who('get', `/fhir/Task/${task.id}/_history/1`)).status,
      history: refs(await who('get', `/fhir/Task/${task.id}/_history`)),
      search: refs(await who('get', `/fhir/Task?patient=Patient/${patient}&_id=${task.id}&_include=Task:focus`)),
      requests: refs(await who('get', `/fhir/ServiceRequest?subject=Patient/${patient}&_id=${sr.id}`)),
      revinclude: refs(await who('get', `/fhir/Patient?_id=${patient}&_revinclude=Task:patient`)).filter((r) => r === `Task/${task.id}`),
    });
    const party = { task: 200, serviceRequest: 200, vread: 200, history: [`Task/${task.id}`], search: [`ServiceRequest/${sr.id}`, `Task/${task.id}`], requests: [`ServiceRequest/${sr.id}`], revinclude: [`Task/${task.id}`] };
    expect(await reads(a)).toEqual(party);
    expect(await reads(b)).toEqual(party);
    expect(await reads(c)).toEqual({ task: 404, serviceRequest: 404, vread: 404, history: [], search: [], requests: [], revinclude: [] });
    // The audit record of C's refused read says why (the response does not).
    const refused = records.filter((r) => r.kind === 'read' && r.entities.some((e) => e.reference === `Task/${task.id}`)).at(-1);
    expect(refused?.accessBasis.at(-1)).toBe(
      `consent: policy opt-out (TREAT shared unless denied); Task/${task.id}: Patient/${patient} by base policy; hidden by read restriction referral-parties`,
    );
    // Only the referral is limited to its parties: C still reads the patient's other data (opt-out, TREAT).
    expect((await c('get', `/fhir/Condition/${condition}`)).status).toBe(200);
    expect((await c('get', `/fhir/Patient/${patient}`)).status).toBe(200);
  });

  it('worklists: Tasks by owner, requester, status, priority, authored-on, patient and business status, with _include=Task:focus', async () => {
    const { sr, task } = await refer({ priority: 'stat' });
    expect((await transition(b, task.id!, { status: 'accepted', businessStatus: { coding: [{ system: 'http://example.org/referral-status', code: 'scheduled' }] } })).status).toBe(200);
    const today = new Date().toISOString().slice(0, 10);
    const queries = [
      `owner=Organization/${ORG_B}&status=accepted&priority=stat`,
      `requester=Organization/${ORG_A}&business-status=http://example.org/referral-status|scheduled`,
      `patient=Patient/${patient}&priority=stat&authored-on=ge${today}&status=accepted`,
    ];
    for (const q of queries) {
      const res = await b('get', `/fhir/Task?${q}&_include=Task:focus`);
      expect(res.status).toBe(200);
      const entries = (res.body as Bundle).entry ?? [];
      expect(entries.filter((e) => e.search?.mode === 'match').map((e) => e.resource?.id)).toEqual([task.id]);
      expect(entries.filter((e) => e.search?.mode === 'include').map((e) => e.resource?.id)).toEqual([sr.id]);
    }
  });
});
