import request from 'supertest';
import type { AuditRecord } from '../../src/fhir/pipeline/audit-record';
import { captureAuditRecords } from '../support/audit';
import { registerTestClient } from '../support/auth';
import { FHIR_JSON, hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

const SYS = 'urn:security-conditional';
const CATEGORY = 'http://terminology.hl7.org/CodeSystem/observation-category';

/**
 * Findings of the outside probe (security hardening issue, items 1, 3 and 7): conditional
 * operations read through and delete at scale; the break-the-glass reason never reached audit.
 */
describe('conditional operations and break-the-glass (security findings)', () => {
  let t: TestApp;
  let patientId: string;
  let labId: string;
  let vitalId: string;
  let records: AuditRecord[] = [];

  const observation = (category: string, value: string) => ({
    resourceType: 'Observation',
    status: 'final',
    identifier: [{ system: SYS, value }],
    category: [{ coding: [{ system: CATEGORY, code: category }] }],
    code: { text: value },
    subject: { reference: `Patient/${patientId}` },
  });
  const as = async (scopes: string[], organization = 'org-test') => {
    const token = await (await registerTestClient(t, { role: 'hospital', scopes, organization })).token();
    return (m: 'post' | 'delete' | 'get', path: string) => request(t.http)[m](path).set('Authorization', `Bearer ${token}`);
  };
  const stored = async (type: string) => Number((await t.db.query(`SELECT count(*) AS n FROM resource WHERE resource_type = $1 AND NOT deleted`, [type]))[0].n);

  beforeAll(async () => {
    t = await createTestApp();
    patientId = (await t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(hiePatient({ identifier: [{ system: SYS, value: 'pat-1' }] }))).body.id;
    labId = (await t.api.post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(observation('laboratory', 'lab-1'))).body.id;
    vitalId = (await t.api.post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(observation('vital-signs', 'vital-1'))).body.id;
    records = captureAuditRecords(t.app);
  });
  afterAll(() => t.close());
  beforeEach(() => {
    records.length = 0;
  });

  it('If-None-Exist needs the search right: a create-only client gets 403, not the stored resource', async () => {
    const createOnly = await as(['system/Observation.c']);
    expect((await createOnly('get', `/fhir/Observation/${labId}`)).status).toBe(403);
    const before = await stored('Observation');
    const res = await createOnly('post', '/fhir/Observation').set('Content-Type', FHIR_JSON).set('If-None-Exist', `_id=${labId}`).send(observation('laboratory', 'x'));
    expect(res.status).toBe(403);
    expect(res.body.resourceType).toBe('OperationOutcome');
    expect(res.body.issue[0]).toMatchObject({ code: 'forbidden', diagnostics: 'No granted scope allows search Observation (system/Observation.s)' });
    expect(JSON.stringify(res.body)).not.toContain('lab-1');
    expect(await stored('Observation')).toBe(before);
  });

  it('If-None-Exist matches only what a scope query lets the client see', async () => {
    const labOnly = await as(['system/Observation.c', 'system/Observation.rs?category=laboratory']);
    const seen = await labOnly('post', '/fhir/Observation').set('Content-Type', FHIR_JSON).set('If-None-Exist', `_id=${labId}`).send(observation('laboratory', 'y'));
    expect([seen.status, seen.body.id]).toEqual([200, labId]);
    // The vital-signs Observation is outside the scope query: no match, so a create, never its body.
    const unseen = await labOnly('post', '/fhir/Observation').set('Content-Type', FHIR_JSON).set('If-None-Exist', `_id=${vitalId}`).send(observation('laboratory', 'z'));
    expect(unseen.status).toBe(201);
    expect(unseen.body.id).not.toBe(vitalId);
    expect(unseen.body.identifier).toEqual([{ system: SYS, value: 'z' }]);
  });

  it('If-None-Exist with search but no read right answers the match without its body', async () => {
    const searchOnly = await as(['system/Observation.cs']);
    const res = await searchOnly('post', '/fhir/Observation').set('Content-Type', FHIR_JSON).set('If-None-Exist', `_id=${labId}`).send(observation('laboratory', 'w'));
    expect(res.status).toBe(200);
    expect(res.body.resourceType).toBe('OperationOutcome');
    expect(res.body.issue[0].diagnostics).toBe('A Observation matching the If-None-Exist criteria exists; nothing was created');
    expect(JSON.stringify(res.body)).not.toContain(labId);
  });

  it('If-None-Exist is no search oracle across types the client cannot read', async () => {
    const observationsOnly = await as(['system/Observation.cs']);
    const res = await observationsOnly('post', '/fhir/Observation')
      .set('Content-Type', FHIR_JSON)
      .set('If-None-Exist', `subject:Patient.identifier=${SYS}|pat-1`)
      .send(observation('laboratory', 'v'));
    expect(res.status).toBe(403);
    expect(res.body.issue[0]).toMatchObject({ code: 'forbidden', diagnostics: 'Chaining into Patient is not allowed for this client' });
  });

  it('conditional delete deletes a single match by default: several answer 412 and nothing is deleted', async () => {
    for (const v of ['claim-1', 'claim-2', 'claim-3']) await t.api.post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(observation('survey', v));
    const before = await stored('Observation');
    const res = await t.api.delete(`/fhir/Observation?identifier=${SYS}|claim-1,${SYS}|claim-2,${SYS}|claim-3`);
    expect(res.status).toBe(412);
    expect(res.body.issue[0]).toMatchObject({ code: 'multiple-matches', diagnostics: 'Conditional delete criteria match 3 resources; this server deletes only a single match' });
    expect(await stored('Observation')).toBe(before);
  });

  it('break-the-glass: the reason reaches the audit record', async () => {
    const glass = await registerTestClient(t, { role: 'hospital', scopes: ['system/Patient.rs'], purposes: ['TREAT', 'ETREAT'] });
    const token = await glass.token('system/Patient.rs', 'ETREAT');
    records.length = 0;
    const res = await request(t.http).get(`/fhir/Patient/${patientId}`).set('Authorization', `Bearer ${token}`).set('X-Break-Glass-Reason', 'unconscious patient in the emergency room');
    expect(res.status).toBe(200);
    expect(records.map((r) => [r.kind, r.purposeOfUse, r.breakGlassReason, r.patients])).toEqual([
      ['read', 'ETREAT', 'unconscious patient in the emergency room', [patientId]],
    ]);
  });
});

describe('conditional delete of several matches (FHIR_CONDITIONAL_DELETE_MAX opt-in)', () => {
  let t: TestApp;
  const previous = process.env.FHIR_CONDITIONAL_DELETE_MAX;

  beforeAll(async () => {
    process.env.FHIR_CONDITIONAL_DELETE_MAX = '10';
    t = await createTestApp();
  });
  afterAll(async () => {
    if (previous === undefined) delete process.env.FHIR_CONDITIONAL_DELETE_MAX;
    else process.env.FHIR_CONDITIONAL_DELETE_MAX = previous;
    await t.close();
  });

  const claim = (value: string) => ({ resourceType: 'Basic', code: { coding: [{ system: SYS, code: value }] } });

  it('deletes every match the client may change, and refuses all of it when one belongs to another organization', async () => {
    const other = await registerTestClient(t, { role: 'hospital', organization: 'org-other' });
    const otherToken = await other.token();
    const mine = [];
    for (let n = 0; n < 3; n++) mine.push((await t.api.post('/fhir/Basic').set('Content-Type', FHIR_JSON).send(claim('mine'))).body.id);
    const theirs = (await request(t.http).post('/fhir/Basic').set('Authorization', `Bearer ${otherToken}`).set('Content-Type', FHIR_JSON).send(claim('mine'))).body.id;
    const refused = await t.api.delete(`/fhir/Basic?code=${SYS}|mine`);
    expect(refused.status).toBe(403);
    expect(refused.body.issue[0]).toMatchObject({ code: 'forbidden', diagnostics: `Basic/${theirs} is not a resource this client may change` });
    for (const id of [...mine, theirs]) expect((await t.api.get(`/fhir/Basic/${id}`)).status).toBe(200);

    const ok = await request(t.http).delete(`/fhir/Basic/${theirs}`).set('Authorization', `Bearer ${otherToken}`);
    expect(ok.status).toBe(200);
    const deleted = await t.api.delete(`/fhir/Basic?code=${SYS}|mine`);
    expect([deleted.status, deleted.body.issue[0].diagnostics]).toEqual([200, 'Deleted 3 Basic resource(s)']);
    for (const id of mine) expect((await t.api.get(`/fhir/Basic/${id}`)).status).toBe(410);
  });
});
