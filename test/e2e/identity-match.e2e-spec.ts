import request from 'supertest';
import type { AuditRecord } from '../../src/fhir/pipeline/audit-record';
import { AuditTrailRepository } from '../../src/audit/audit-trail.repository';
import { MATCH_GRADE_URL } from '../../src/identity/match.operation';
import { CANDIDATE_LIMIT } from '../../src/identity/patient-demographics.repository';
import { postTransaction } from '../support/bundles';
import { captureAuditRecords } from '../support/audit';
import { hospitalAgent } from '../support/auth';
import { FHIR_JSON } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

const RUN = Date.now().toString(36);
const ORG = ['a', 'b', 'c'].map((n) => `match-${n}-${RUN}`);
const ACT = 'http://terminology.hl7.org/CodeSystem/v3-ActCode';
const SSN = 'http://hl7.org/fhir/sid/us-ssn';

type Agent = ReturnType<typeof request.agent>;

const consentDeny = (patient: string) => ({
  resourceType: 'Consent',
  status: 'active',
  scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
  category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
  patient: { reference: patient },
  dateTime: '2026-01-01T00:00:00Z',
  policyRule: { coding: [{ system: ACT, code: 'OPTOUT' }] },
  provision: { type: 'deny' },
});

function patient(org: number, family: string, given: string, birthDate: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    resourceType: 'Patient',
    identifier: [{ system: `http://${ORG[org]}.example.org/mrn`, value: `${family}-${given}-${RUN}` }],
    name: [{ family, given: [given] }],
    gender: 'male',
    birthDate,
    ...extra,
  };
}

const params = (resource: Record<string, unknown>, more: Record<string, unknown>[] = []) => ({
  resourceType: 'Parameters',
  parameter: [{ name: 'resource', resource }, ...more],
});

interface Entry {
  resource: { resourceType: string; id: string; issue?: { code: string; diagnostics: string; expression?: string[] }[] };
  search: { mode: string; score?: number; extension?: { url: string; valueCode: string }[] };
}

/**
 * Patient/$match (R4 Patient-match; docs/identity.md): candidates of every organization are scored
 * under the identity-matching system context, but the caller gets, counts and is audited for only
 * the Patients its AccessContext allows (a deny Consent hides one from other organizations).
 */
describe('identity: Patient/$match', () => {
  let t: TestApp;
  const as: Agent[] = [];
  const records: AuditRecord[] = [];
  // One person at three organizations; C's record is hidden from A and B by its patient's deny Consent.
  const ids: Record<string, string> = {};
  const surname = `Smithson${RUN.replace(/[0-9]/g, '')}`;
  const phone = { system: 'phone', value: '+1 555 010 7788' };

  const create = async (org: number, body: Record<string, unknown>, type = 'Patient'): Promise<string> => {
    const res = await as[org].post(`/fhir/${type}`).set('Content-Type', FHIR_JSON).send(body);
    if (res.status !== 201) throw new Error(`create ${type}: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body.id as string;
  };
  const match = (org: number, body: object) => as[org].post('/fhir/Patient/$match').set('Content-Type', FHIR_JSON).send(body);
  const matchIds = (res: request.Response): string[] => ((res.body.entry ?? []) as Entry[]).filter((e) => e.search.mode === 'match').map((e) => e.resource.id);

  beforeAll(async () => {
    // This node only enqueues matching jobs: the records stay unlinked, as in the moments before
    // their job runs. (Once linked into one Person, C's denial follows the person and hides B from
    // A as well: identity-linking.e2e-spec.ts and docs/consent.md.)
    process.env.JOBS_WORKERS = 'off';
    t = await createTestApp();
    for (const org of ORG) as.push(await hospitalAgent(t, org));
    ids.a = await create(0, patient(0, surname, 'John', '1980-04-02', { telecom: [phone] }));
    ids.b = await create(1, patient(1, surname, 'Johnny', '1980-02-04', { telecom: [phone] }));
    ids.c = await create(2, patient(2, surname, 'John', '1980-04-02', { telecom: [phone] }));
    await create(2, consentDeny(`Patient/${ids.c}`), 'Consent');
    // A twin of the person at A (other given name): a probable match, not certain.
    ids.twin = await create(0, patient(0, surname, 'Michael', '1980-04-02', { telecom: [phone] }));
    // Another person, at A and (hidden) at C, sharing a trusted national id.
    ids.qa = await create(0, patient(0, `Quill${RUN.replace(/[0-9]/g, '')}`, 'Quentin', '1975-11-30', { identifier: [{ system: SSN, value: `999-${RUN}` }] }));
    ids.qc = await create(2, patient(2, `Quill${RUN.replace(/[0-9]/g, '')}`, 'Quentin', '1975-11-30', { identifier: [{ system: SSN, value: `999-${RUN}` }] }));
    await create(2, consentDeny(`Patient/${ids.qc}`), 'Consent');
    captureAuditRecords(t.app, records);
  });
  afterAll(async () => t?.close());
  beforeEach(() => {
    records.length = 0;
  });

  it('returns the visible matches by score with search.score and match-grade, never the hidden one', async () => {
    const res = await match(0, params(patient(0, surname, 'Jack', '1980-04-02', { identifier: undefined, telecom: [phone] })));
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ resourceType: 'Bundle', type: 'searchset', total: 3 });
    const entries = res.body.entry as Entry[];
    // Jack -> John (nickname): A and B are certain (B with the birth day and month transposed), the twin probable.
    expect(entries.map((e) => e.resource.id)).toEqual([ids.a, ids.b, ids.twin]);
    expect(entries.map((e) => e.search.extension)).toEqual([
      [{ url: MATCH_GRADE_URL, valueCode: 'certain' }],
      [{ url: MATCH_GRADE_URL, valueCode: 'certain' }],
      [{ url: MATCH_GRADE_URL, valueCode: 'probable' }],
    ]);
    expect(entries[0].search).toMatchObject({ mode: 'match', score: 1 });
    expect(entries[1].search.score).toBeGreaterThan(entries[2].search.score!);
    expect(entries[1].search.score).toBeLessThan(1);
    expect(matchIds(res)).not.toContain(ids.c);
  });

  it('the hidden record is a candidate: its own custodian sees it in the same match', async () => {
    const res = await match(2, params(patient(2, surname, 'Jack', '1980-04-02', { identifier: undefined, telecom: [phone] })));
    expect(res.status).toBe(200);
    expect(matchIds(res).sort()).toEqual([ids.a, ids.b, ids.c, ids.twin].sort());
    expect(res.body.total).toBe(4);
  });

  it('the audit record names only the Patients returned, not the hidden candidate', async () => {
    const res = await match(0, params(patient(0, surname, 'John', '1980-04-02', { identifier: undefined, telecom: [phone] })));
    expect(res.status).toBe(200);
    const op = records.filter((r) => r.kind === 'operation');
    expect(op).toHaveLength(1);
    expect(op[0].entities.map((e) => e.reference).sort()).toEqual([`Patient/${ids.a}`, `Patient/${ids.b}`, `Patient/${ids.twin}`].sort());
    expect(op[0].patients).not.toContain(ids.c);
    const mints = records.filter((r) => r.kind === 'system-access');
    expect(mints.map((r) => r.subtype)).toEqual(['identity-matching']);
    expect(JSON.stringify(records)).not.toContain(ids.c);
  });

  it('the system-access record and the call\'s own record are durable in one commit, before the response', async () => {
    const repository = t.app.get(AuditTrailRepository);
    const append = jest.spyOn(repository, 'appendAlone');
    try {
      const res = await match(0, params(patient(0, surname, 'John', '1980-04-02', { identifier: undefined, telecom: [phone] })));
      expect(res.status).toBe(200);
      // One group-commit batch (one commit, one WAL flush) holding both records; two batches before.
      const batches = append.mock.calls.map(([rows]) => rows.map((row) => row.subtype.join(' ')));
      expect(batches).toEqual([['system-access identity-matching', 'operation match']]);
      const [{ n }] = await t.db.query(`SELECT count(*)::int AS n FROM audit_event WHERE id = ANY($1::uuid[])`, [append.mock.calls[0][0].map((row) => row.id)]);
      expect(n).toBe(2);
    } finally {
      append.mockRestore();
    }
  });

  it('fails closed: when the batch holding the system-access record cannot be written, the call is a 503 with no match', async () => {
    const append = jest.spyOn(t.app.get(AuditTrailRepository), 'appendAlone').mockRejectedValueOnce(new Error('audit trail unavailable'));
    try {
      const res = await match(0, params(patient(0, surname, 'John', '1980-04-02', { identifier: undefined, telecom: [phone] })));
      expect(res.status).toBe(503);
      expect(res.body.resourceType).toBe('OperationOutcome');
      expect(res.body.issue[0].code).toBe('transient');
      expect(append.mock.calls[0][0].map((row) => row.subtype.join(' '))).toEqual(['system-access identity-matching', 'operation match']);
    } finally {
      append.mockRestore();
    }
  });

  it('onlyCertainMatches with several visible certain matches returns none and an OperationOutcome', async () => {
    const res = await match(0, params(patient(0, surname, 'John', '1980-04-02', { identifier: undefined, telecom: [phone] }), [{ name: 'onlyCertainMatches', valueBoolean: true }]));
    expect(res.status).toBe(200);
    expect(res.body.total).toBe(0);
    const entries = res.body.entry as Entry[];
    expect(entries).toHaveLength(1);
    expect(entries[0].search.mode).toBe('outcome');
    expect(entries[0].resource.issue).toEqual([
      {
        severity: 'warning',
        code: 'multiple-matches',
        diagnostics: '2 Patients are certain matches; onlyCertainMatches returns a match only when exactly one is',
        expression: ['onlyCertainMatches'],
      },
    ]);
  });

  it('onlyCertainMatches never counts a hidden certain match: one visible certain match is returned', async () => {
    const input = patient(0, `Quill${RUN.replace(/[0-9]/g, '')}`, 'Q', '1975-11-30', { identifier: [{ system: SSN, value: `999-${RUN}` }] });
    const res = await match(0, params(input, [{ name: 'onlyCertainMatches', valueBoolean: true }]));
    expect(res.status).toBe(200);
    expect(res.body.total).toBe(1);
    expect(res.body.entry).toEqual([expect.objectContaining({ search: { mode: 'match', score: 1, extension: [{ url: MATCH_GRADE_URL, valueCode: 'certain' }] } })]);
    expect(matchIds(res)).toEqual([ids.qa]);
    // C, its custodian, sees two certain matches for the same input.
    const atC = await match(2, params(input, [{ name: 'onlyCertainMatches', valueBoolean: true }]));
    expect(atC.body.entry[0].resource.issue[0].code).toBe('multiple-matches');
  });

  it('count cuts the list after the best', async () => {
    const res = await match(0, params(patient(0, surname, 'John', '1980-04-02', { identifier: undefined, telecom: [phone] }), [{ name: 'count', valueInteger: 1 }]));
    expect(res.status).toBe(200);
    expect(matchIds(res)).toEqual([ids.a]);
    expect(res.body.total).toBe(1);
  });

  it.each([
    ['no resource', { resourceType: 'Parameters', parameter: [{ name: 'count', valueInteger: 1 }] }, 'resource', 'required'],
    ['a resource that is not a Patient', { resourceType: 'Parameters', parameter: [{ name: 'resource', resource: { resourceType: 'Observation', status: 'final', code: { text: 'x' } } }] }, 'resource', 'invalid'],
    ['count 0', params(patient(0, 'X', 'Y', '1980-01-01'), [{ name: 'count', valueInteger: 0 }]), 'count', 'invalid'],
    ['count 101', params(patient(0, 'X', 'Y', '1980-01-01'), [{ name: 'count', valueInteger: 101 }]), 'count', 'invalid'],
    ['a Patient with nothing to match on', params({ resourceType: 'Patient', gender: 'male' }), 'resource', 'invalid'],
    ['a structurally invalid Patient', params({ resourceType: 'Patient', name: [{ family: 42 }], birthDate: '1980-01-01' }), 'Patient.name[0].family', 'structure'],
  ])('refuses %s with a 400 naming the parameter', async (_name, body, expression, code) => {
    const res = await match(0, body);
    expect(res.status).toBe(400);
    expect(res.body.resourceType).toBe('OperationOutcome');
    expect(res.body.issue[0]).toMatchObject({ code, expression: [expression] });
  });

  it('past the candidate limit, keeps the records sharing more blocking keys: a common name\'s look-alikes do not push the person out', async () => {
    // More look-alikes (same family and given name, other birth dates) than the limit, all with ids
    // sorting before the person's own record at B, which also shares the birth date and the SSN.
    const family = `Cutler${RUN.replace(/[0-9]/g, '')}`;
    const lookalikes = Array.from({ length: CANDIDATE_LIMIT + 5 }, (_, i) => ({
      ...patient(1, family, 'Samuel', `19${String(20 + (i % 60)).padStart(2, '0')}-0${1 + (i % 9)}-1${i % 10}`),
      id: `aaa-${RUN}-${i}`,
      identifier: [{ system: `http://${ORG[1]}.example.org/mrn`, value: `cut-${RUN}-${i}` }],
    }));
    const own = { ...patient(1, family, 'Samuel', '1981-06-25'), id: `zzz-${RUN}-own`, identifier: [{ system: SSN, value: `555-${RUN}` }] };
    const put = await postTransaction(as[1], [...lookalikes, own].map((r) => ({ resource: r, request: { method: 'PUT', url: `Patient/${r.id}` } })));
    expect(put.status).toBe(200);
    const res = await match(0, params(patient(0, family, 'Samuel', '1981-06-25', { identifier: [{ system: SSN, value: `555-${RUN}` }] })));
    expect(res.status).toBe(200);
    const entries = res.body.entry as Entry[];
    // Cut by id alone, the limit kept only look-alikes and the person's record was not a candidate.
    expect(entries[0].resource.id).toBe(own.id);
    expect(entries[0].search.extension).toEqual([{ url: MATCH_GRADE_URL, valueCode: 'certain' }]);
  });

  it('GET without a resource is a 400; the instance level is not defined (404)', async () => {
    expect((await as[0].get('/fhir/Patient/$match?count=1')).status).toBe(400);
    expect((await as[0].post('/fhir/Patient/x/$match').set('Content-Type', FHIR_JSON).send(params(patient(0, 'X', 'Y', '1980-01-01')))).status).toBe(404);
  });

  it('is advertised with its OperationDefinition, based on the HL7 one', async () => {
    const res = await as[0].get('/fhir/OperationDefinition/match');
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ code: 'match', base: 'http://hl7.org/fhir/OperationDefinition/Patient-match', type: true, instance: false, resource: ['Patient'] });
  });
});
