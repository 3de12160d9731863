import request from 'supertest';
import { IDENTITY_MATCH_QUEUE, IdentityMatchingJob, REVIEW_TASK_CODE } from '../../src/identity/identity-matching.job';
import { loadIdentityConfig } from '../../src/identity/identity-config';
import { captureAuditRecords } from '../support/audit';
import { hospitalAgent } from '../support/auth';
import { postTransaction } from '../support/bundles';
import { FHIR_JSON } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';
import { jobsSettled } from '../support/jobs';

// Matching after write is what this file tests (test/support turns it off for the others).
process.env.IDENTITY_MATCH_ON_WRITE = 'on';

const RUN = Date.now().toString(36);
const LETTERS = RUN.replace(/[0-9]/g, '');
const ORG = ['a', 'b', 'c'].map((n) => `link-${n}-${RUN}`);
const EXCHANGE = loadIdentityConfig().exchangeOrganization;

type Agent = ReturnType<typeof request.agent>;

function patient(org: number, family: string, given: string, birthDate: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    resourceType: 'Patient',
    identifier: [{ system: `http://${ORG[org]}.example.org/mrn`, value: `${family}-${given}-${birthDate}` }],
    name: [{ family, given: [given] }],
    gender: 'female',
    birthDate,
    ...extra,
  };
}

/**
 * Matching after write (docs/identity.md): each Patient write enqueues a job in its transaction; the
 * job links certain matches of other organizations into one Person (custodian: the exchange,
 * assurance level3) that feeds consent's linked records, asks HIE admins to review probable ones
 * with a Task, and is serialized per person so concurrent registrations make one Person.
 */
describe('identity: matching after write and Person links', () => {
  let t: TestApp;
  const as: Agent[] = [];

  const create = async (org: number, body: Record<string, unknown>): Promise<string> => {
    const res = await as[org].post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(body);
    if (res.status !== 201) throw new Error(`create: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body.id as string;
  };
  /** Waits until every matching job committed so far is done (none may fail). */
  const settled = (): Promise<void> => jobsSettled(t.db, IDENTITY_MATCH_QUEUE);
  const personOf = async (patientId: string): Promise<string | undefined> =>
    ((await t.db.query(`SELECT person_id FROM identity_person_link WHERE patient_id = $1`, [patientId])) as { person_id: string }[])[0]?.person_id;

  beforeAll(async () => {
    t = await createTestApp();
    for (const org of ORG) as.push(await hospitalAgent(t, org));
  });
  afterAll(async () => t?.close());

  it('links a certain match at another organization into one Person and feeds the linked-record tables', async () => {
    const family = `Okafor${LETTERS}`;
    const a = await create(0, patient(0, family, 'Margaret', '1966-07-03', { telecom: [{ system: 'phone', value: '555-301-7000' }] }));
    const b = await create(1, patient(1, family, 'Peggy', '1966-03-07', { telecom: [{ system: 'phone', value: '(555) 301 7000' }] }));
    await settled();
    const person = await personOf(a);
    expect(person).toBeDefined();
    expect(await personOf(b)).toBe(person);

    const stored: { custodian_org: string; content: { link: unknown[]; managingOrganization: unknown } }[] = await t.db.query(
      `SELECT custodian_org, content FROM resource WHERE resource_type = 'Person' AND id = $1`,
      [person],
    );
    expect(stored).toHaveLength(1);
    expect(stored[0].custodian_org).toBe(EXCHANGE);
    expect(stored[0].content.managingOrganization).toEqual({ reference: `Organization/${EXCHANGE}` });
    // In the order the jobs linked them (whichever record's job found the other first).
    const byRef = (x: { target: { reference: string } }, y: { target: { reference: string } }) => x.target.reference.localeCompare(y.target.reference);
    expect([...(stored[0].content.link as { target: { reference: string } }[])].sort(byRef)).toEqual(
      [
        { target: { reference: `Patient/${a}` }, assurance: 'level3' },
        { target: { reference: `Patient/${b}` }, assurance: 'level3' },
      ].sort(byRef),
    );
    const links = await t.db.query(`SELECT patient_id, linked_id FROM patient_link_assertion WHERE source = $1 ORDER BY patient_id, linked_id`, [`Person/${person}`]);
    expect(links).toEqual(
      [
        { patient_id: a, linked_id: b },
        { patient_id: b, linked_id: a },
      ].sort((x, y) => x.patient_id.localeCompare(y.patient_id)),
    );
    expect(await t.db.query(`SELECT linked_id FROM patient_link WHERE patient_id = $1`, [a])).toEqual([{ linked_id: b }]);

    // A third organization's record of the same person joins the same Person; a rerun changes nothing.
    const c = await create(2, patient(2, family, 'Margaret', '1966-07-03'));
    await settled();
    expect(await personOf(c)).toBe(person);
    const versions = await t.db.query(`SELECT version_id FROM resource WHERE resource_type = 'Person' AND id = $1`, [person]);
    expect(versions).toEqual([{ version_id: 2 }]);
    const closure = await t.db.query(`SELECT linked_id FROM patient_link WHERE patient_id = $1 ORDER BY linked_id`, [c]);
    expect(closure.map((r: { linked_id: string }) => r.linked_id)).toEqual([a, b].sort());
  });

  it("once linked, a patient's deny Consent at one organization hides the person's other records, in reads and in $match", async () => {
    const family = `Varga${LETTERS}`;
    const body = (org: number) => patient(org, family, 'Katalin', '1958-12-19', { identifier: [{ system: 'http://hl7.org/fhir/sid/us-ssn', value: `ssn-${RUN}` }] });
    const a = await create(0, body(0));
    const b = await create(1, body(1));
    await settled();
    expect(await personOf(b)).toBe(await personOf(a));
    const input = { resourceType: 'Parameters', parameter: [{ name: 'resource', resource: body(2) }] };
    const before = await as[2].post('/fhir/Patient/$match').set('Content-Type', FHIR_JSON).send(input);
    expect(before.body.entry.map((e: { resource: { id: string } }) => e.resource.id).sort()).toEqual([a, b].sort());
    const consent = {
      resourceType: 'Consent',
      status: 'active',
      scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
      category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
      patient: { reference: `Patient/${a}` },
      dateTime: '2026-01-01T00:00:00Z',
      policyRule: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'OPTOUT' }] },
      provision: { type: 'deny' },
    };
    expect((await as[0].post('/fhir/Consent').set('Content-Type', FHIR_JSON).send(consent)).status).toBe(201);
    // B's record (at another organization) is hidden from C by A's denial, through the Person link.
    expect((await as[2].get(`/fhir/Patient/${b}`)).status).toBe(404);
    const after = await as[2].post('/fhir/Patient/$match').set('Content-Type', FHIR_JSON).send(input);
    expect(after.status).toBe(200);
    expect([after.body.total, after.body.entry]).toEqual([0, undefined]);
    // B's own organization still sees its record.
    expect((await as[1].get(`/fhir/Patient/${b}`)).status).toBe(200);
  });

  it('a deleted Patient leaves its Person and the linked records; the others stay linked', async () => {
    const family = `Lindqvist${LETTERS}`;
    const a = await create(0, patient(0, family, 'Susan', '1971-09-21'));
    const b = await create(1, patient(1, family, 'Sue', '1971-09-21'));
    const c = await create(2, patient(2, family, 'Susan', '1971-09-21'));
    await settled();
    const person = await personOf(a);
    expect([await personOf(b), await personOf(c)]).toEqual([person, person]);
    // Delete the Person's first-linked record, the centre of its assertions.
    const [{ content }] = await t.db.query(`SELECT content FROM resource WHERE resource_type = 'Person' AND id = $1`, [person]);
    const first = /Patient\/(.+)/.exec(content.link[0].target.reference)![1];
    const org = [a, b, c].indexOf(first);
    expect((await as[org].delete(`/fhir/Patient/${first}`)).status).toBe(200);
    await settled();
    const rest = [a, b, c].filter((x) => x !== first).sort();
    expect(await personOf(first)).toBeUndefined();
    const [after] = await t.db.query(`SELECT content FROM resource WHERE resource_type = 'Person' AND id = $1`, [person]);
    expect(after.content.link.map((l: { target: { reference: string } }) => l.target.reference).sort()).toEqual(rest.map((x) => `Patient/${x}`));
    expect(await t.db.query(`SELECT patient_id FROM patient_link_assertion WHERE $1 IN (patient_id, linked_id)`, [first])).toEqual([]);
    expect(await t.db.query(`SELECT linked_id FROM patient_link WHERE patient_id = $1`, [rest[0]])).toEqual([{ linked_id: rest[1] }]);
  });

  it('a probable match (a twin) is not linked; HIE admins get one review Task per pair', async () => {
    const family = `Adeyemi${LETTERS}`;
    const phone = { system: 'phone', value: '555-404-1212' };
    const a = await create(0, patient(0, family, 'Grace', '1990-01-15', { telecom: [phone] }));
    const twin = await create(1, patient(1, family, 'Hope', '1990-01-15', { telecom: [phone] }));
    await settled();
    expect(await personOf(a)).toBeUndefined();
    expect(await personOf(twin)).toBeUndefined();
    const reviews: { task_id: string }[] = await t.db.query(`SELECT task_id FROM identity_review WHERE $1 IN (patient_id, candidate_id)`, [a]);
    expect(reviews).toHaveLength(1);
    const [task] = await t.db.query(`SELECT custodian_org, content FROM resource WHERE resource_type = 'Task' AND id = $1`, [reviews[0].task_id]);
    expect(task.custodian_org).toBe(EXCHANGE);
    const [first, second] = [a, twin].sort();
    expect(task.content).toMatchObject({
      status: 'requested',
      intent: 'proposal',
      code: { coding: [REVIEW_TASK_CODE] },
      focus: { reference: `Patient/${first}` },
      owner: { reference: `Organization/${EXCHANGE}` },
      input: [{ type: { text: 'candidate' }, valueReference: { reference: `Patient/${second}` } }, { type: { text: 'score' } }, { type: { text: 'match-grade' }, valueCode: 'probable' }],
    });
    // Updating the twin reruns its matching: no second Task for the same pair.
    const current = await as[1].get(`/fhir/Patient/${twin}`);
    expect((await as[1].put(`/fhir/Patient/${twin}`).set('Content-Type', FHIR_JSON).send({ ...current.body, active: true })).status).toBe(200);
    await settled();
    expect(await t.db.query(`SELECT task_id FROM identity_review WHERE $1 IN (patient_id, candidate_id)`, [a])).toHaveLength(1);
  });

  it('20 people registered at two organizations at once make 20 Persons, each with both records', async () => {
    const pairs = Array.from({ length: 20 }, (_, i) => ({
      family: `Concurrent${LETTERS}${String.fromCharCode(97 + i)}x`,
      given: ['Alice', 'Beatrice', 'Clara', 'Dora', 'Edith'][i % 5],
      birthDate: `1970-05-${String(10 + i).padStart(2, '0')}`,
    }));
    const ids = await Promise.all(pairs.flatMap((p) => [create(0, patient(0, p.family, p.given, p.birthDate)), create(1, patient(1, p.family, p.given, p.birthDate))]));
    // Besides the queue's own workers, every job at once (as 40 nodes would): both records of a pair
    // are matched concurrently, each seeing the other. Without the blocking-key lock in the job this
    // fails (jobs deadlock on each other's link rows, or race into two Persons).
    const job = t.app.get(IdentityMatchingJob);
    await Promise.all(ids.map((patientId, i) => job.run({ id: `direct-${i}`, queue: IDENTITY_MATCH_QUEUE, data: { patientId }, retryCount: 0 })));
    await settled();
    const persons = new Set<string>();
    for (let i = 0; i < pairs.length; i++) {
      const [x, y] = [ids[2 * i], ids[2 * i + 1]];
      const px = await personOf(x);
      expect({ pair: i, person: px }).toEqual({ pair: i, person: expect.any(String) });
      expect(await personOf(y)).toBe(px);
      persons.add(px!);
    }
    expect(persons.size).toBe(20);
    const [{ n }] = await t.db.query(`SELECT count(DISTINCT person_id)::int AS n FROM identity_person_link WHERE patient_id = ANY($1::text[])`, [ids]);
    expect(n).toBe(20);
    // One Person resource per person, not one per job that raced (checked on the stored Persons too).
    const stored: { links: number }[] = await t.db.query(
      `SELECT jsonb_array_length(content->'link')::int AS links FROM resource
        WHERE resource_type = 'Person' AND NOT deleted
          AND EXISTS (SELECT 1 FROM jsonb_array_elements(content->'link') l WHERE l->'target'->>'reference' = ANY($1::text[]))`,
      [ids.map((id) => `Patient/${id}`)],
    );
    expect(stored).toEqual(Array.from({ length: 20 }, () => ({ links: 2 })));
  });

  it('the matching jobs of writes committed together run as one batch: one system-access mint for all, nothing linked', async () => {
    const records = captureAuditRecords(t.app);
    await settled();
    const before = ((await t.db.query(`SELECT count(*)::int AS n FROM identity_person_link`)) as { n: number }[])[0].n;
    // Five new people (nobody else has their names or birth dates) in one transaction: five jobs, one commit.
    const family = `Quarrington${LETTERS}`;
    records.length = 0;
    const res = await postTransaction(
      as[2],
      ['Ann', 'Bea', 'Cleo', 'Dora', 'Edie'].map((given, i) => ({ resource: patient(2, family, given, `190${i}-0${i + 1}-1${i}`), request: { method: 'POST', url: 'Patient' } })),
    );
    expect(res.status).toBe(200);
    await settled();
    // One fetch took all five (before batching: five mints, five transactions with blocking-key locks).
    expect(records.filter((r) => r.kind === 'system-access' && r.subtype === 'identity-matching')).toHaveLength(1);
    expect(((await t.db.query(`SELECT count(*)::int AS n FROM identity_person_link`)) as { n: number }[])[0].n).toBe(before);
  });
});
