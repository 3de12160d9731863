import request from 'supertest';
import type { AuditRecord } from '../../src/fhir/pipeline/audit-record';
import type { WriteEvent } from '../../src/fhir/pipeline/write-events';
import { WriteEvents } from '../../src/fhir/pipeline/write-events';
import { APP_CONFIG, AppConfig } from '../../src/config/app.config';
import { IDENTITY_CONFIG, IdentityConfig } from '../../src/identity/identity-config';
import { IDENTITY_MATCH_QUEUE } from '../../src/identity/identity-matching.job';
import { IDENTITY_REMATCH_QUEUE } from '../../src/identity/identity-rematch.job';
import { captureAuditRecords } from '../support/audit';
import { hospitalAgent, registerTestClient } from '../support/auth';
import { consentResource } from '../support/consent';
import { FHIR_JSON } from '../support/fixtures';
import { jobsSettled } from '../support/jobs';
import { createTestApp, TestApp } from '../support/test-app';

// Person links made by matching after write are the subject here (test/support turns it off elsewhere).
process.env.IDENTITY_MATCH_ON_WRITE = 'on';

const RUN = Date.now().toString(36);
const LETTERS = RUN.replace(/[0-9]/g, '');
const ORG = ['a', 'b', 'c', 'd'].map((n) => `idadm-${n}-${RUN}`);
const ACT = 'http://terminology.hl7.org/CodeSystem/v3-ActCode';
const HIV = { system: ACT, code: 'HIV' };
const SSN = 'http://hl7.org/fhir/sid/us-ssn';

type Agent = ReturnType<typeof request.agent>;

function patient(org: number, family: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    resourceType: 'Patient',
    identifier: [{ system: `http://${ORG[org]}.example.org/mrn`, value: `${family}-${org}` }],
    name: [{ family, given: ['Dagny'] }],
    gender: 'female',
    birthDate: '1971-05-23',
    ...extra,
  };
}

const recipient = (org: number) => [{ role: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'IRCP' }] }, reference: { reference: `Organization/${ORG[org]}` } }];
const ids = (bundle: { entry?: { resource: { resourceType: string; id: string } }[] }) => (bundle.entry ?? []).map((e) => `${e.resource.resourceType}/${e.resource.id}`).sort();

/**
 * The master patient index's Person links as linked records (docs/identity.md, docs/consent.md):
 * permits follow Person links only, `$everything` and compartment searches include the person's
 * other records subject to consent, and HIE admins link, unlink, merge and split Persons.
 */
describe('identity: Person links as linked records, and their administration', () => {
  let t: TestApp;
  const as: Agent[] = [];
  let admin: Agent;
  const records: AuditRecord[] = [];
  /** Person writes as the write events report them after commit (what a Subscription is notified by). */
  const personEvents: { id: string; links: string[] }[] = [];

  const created = (res: request.Response): string => {
    if (res.status !== 201) throw new Error(`create: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body.id as string;
  };
  const create = async (org: number, body: Record<string, unknown>): Promise<string> =>
    created(await as[org].post(`/fhir/${body.resourceType as string}`).set('Content-Type', FHIR_JSON).send(body));
  const observation = (org: number, p: string, security: unknown[] = []) =>
    create(org, { resourceType: 'Observation', status: 'final', meta: { security }, code: { text: 'identity admin test' }, subject: { reference: `Patient/${p}` } });
  const condition = (org: number, p: string) =>
    create(org, { resourceType: 'Condition', code: { text: 'identity admin test' }, subject: { reference: `Patient/${p}` }, clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-clinical', code: 'active' }] } });
  const settled = (): Promise<void> => jobsSettled(t.db, IDENTITY_MATCH_QUEUE);
  const personOf = async (patientId: string): Promise<string | undefined> =>
    ((await t.db.query(`SELECT person_id FROM identity_person_link WHERE patient_id = $1`, [patientId])) as { person_id: string }[])[0]?.person_id;
  /** One person registered at each of these organizations with a shared national id: linked by matching (level3). */
  async function person(orgs: number[], family: string): Promise<string[]> {
    const records: string[] = [];
    for (const org of orgs) records.push(await create(org, patient(org, family, { identifier: [{ system: SSN, value: `${family}-ssn` }] })));
    await settled();
    const p = await personOf(records[0]);
    for (const r of records) expect(await personOf(r)).toBe(p);
    return records;
  }

  beforeAll(async () => {
    t = await createTestApp();
    for (const org of ORG) as.push(await hospitalAgent(t, org));
    const adminClient = await registerTestClient(t, { role: 'admin', organization: `idadm-hie-${RUN}`, scopes: ['system/Person.cruds'], purposes: ['HSYSADMIN'] });
    admin = request.agent(t.http);
    admin.set('Authorization', `Bearer ${await adminClient.token()}`);
    captureAuditRecords(t.app, records);
    t.app.get(WriteEvents).register({
      name: 'test-person-writes',
      phase: 'post-commit',
      order: 900,
      resourceTypes: ['Person'],
      handle: async (e: WriteEvent) => {
        personEvents.push({ id: e.id, links: (((e.after ?? {}) as { link?: { target: { reference: string } }[] }).link ?? []).map((l) => l.target.reference).sort() });
      },
    });
  });
  afterAll(async () => t?.close());

  it("a permit recorded at a Person-linked record opens the person's other records; a Patient.link permit still does not", async () => {
    const [p1, p2] = await person([0, 1], `Permit${LETTERS}`);
    const hiv1 = await observation(0, p1, [HIV]);
    const hiv2 = await observation(1, p2, [HIV]);
    // A hospital's own Patient.link to the same pair of organizations: deny-only, as before.
    const q1 = await create(0, patient(0, `Asserted${LETTERS}`, { birthDate: '1940-01-01' }));
    const q2 = await create(1, patient(1, `Unrelated${LETTERS}`, { name: [{ family: `Unrelated${LETTERS}`, given: ['Ola'] }], gender: 'male', birthDate: '1950-03-04', link: [{ other: { reference: `Patient/${q1}` }, type: 'seealso' }] }));
    await settled();
    expect(await personOf(q1)).toBeUndefined();
    const hivQ1 = await observation(0, q1, [HIV]);
    const hivQ2 = await observation(1, q2, [HIV]);
    // Organization 2 permits organization 3 HIV data at its records only.
    created(await as[1].post('/fhir/Consent').set('Content-Type', FHIR_JSON).send(consentResource(p2, { type: 'permit', actor: recipient(2), securityLabel: [HIV] })));
    created(await as[1].post('/fhir/Consent').set('Content-Type', FHIR_JSON).send(consentResource(q2, { type: 'permit', actor: recipient(2), securityLabel: [HIV] })));

    const seen = await as[2].get(`/fhir/Observation?subject=Patient/${p1},Patient/${p2},Patient/${q1},Patient/${q2}&_total=accurate`);
    expect(seen.status).toBe(200);
    expect([seen.body.total, ids(seen.body)]).toEqual([3, [`Observation/${hiv1}`, `Observation/${hiv2}`, `Observation/${hivQ2}`].sort()]);
    expect((await as[2].get(`/fhir/Observation/${hiv1}`)).status).toBe(200);
    expect((await as[2].get(`/fhir/Observation/${hivQ1}`)).status).toBe(404);
    const closure = await t.db.query(`SELECT patient_id, linked_id, via_person FROM patient_link WHERE patient_id = ANY($1) ORDER BY patient_id`, [[p1, q1]]);
    expect(closure).toEqual([
      { patient_id: p1, linked_id: p2, via_person: true },
      { patient_id: q1, linked_id: q2, via_person: false },
    ].sort((x, y) => x.patient_id.localeCompare(y.patient_id)));
  });

  it("$everything and compartment searches on one organization's record include the person's records at the other two, minus what consent denies", async () => {
    const [a, b, c] = await person([0, 1, 2], `Everything${LETTERS}`);
    const a1 = await observation(0, a);
    const b1 = await observation(1, b);
    const b2 = await condition(1, b);
    const c1 = await observation(2, c);
    // A record at a fourth organization linked only by its own Patient.link: never pulled in.
    const d = await create(3, patient(3, `Other${LETTERS}`, { birthDate: '1990-02-02', link: [{ other: { reference: `Patient/${a}` }, type: 'seealso' }] }));
    await observation(3, d);
    // At C the person denies organization A their Observations: it follows the person to B's too.
    created(await as[2].post('/fhir/Consent').set('Content-Type', FHIR_JSON).send(
      consentResource(c, { type: 'permit', provision: [{ type: 'deny', actor: recipient(0), class: [{ system: 'http://hl7.org/fhir/resource-types', code: 'Observation' }] }] }),
    ));

    const everything = await as[0].get(`/fhir/Patient/${a}/$everything?_total=accurate`);
    expect(everything.status).toBe(200);
    // The Person (R4: in the Patient compartment by its link) and D's Patient (its link names A) too,
    // but none of D's data.
    expect(ids(everything.body).filter((r) => !r.startsWith('Consent/'))).toEqual(
      [`Patient/${a}`, `Patient/${b}`, `Patient/${c}`, `Patient/${d}`, `Person/${await personOf(a)}`, `Observation/${a1}`, `Condition/${b2}`].sort(),
    );
    const conditions = await as[0].get(`/fhir/Patient/${a}/Condition`);
    expect(ids(conditions.body)).toEqual([`Condition/${b2}`]);
    // B's organization is not denied: it sees the whole person from its own record.
    const fromB = await as[1].get(`/fhir/Patient/${b}/Observation`);
    expect(ids(fromB.body)).toEqual([`Observation/${a1}`, `Observation/${b1}`, `Observation/${c1}`].sort());
  });

  const refs = (name: string, ...targets: string[]) => ({ resourceType: 'Parameters', parameter: targets.map((x) => ({ name, valueReference: { reference: x } })) });
  const op = (path: string, body: object, who: Agent = admin) => who.post(path).set('Content-Type', FHIR_JSON).send(body);
  const linksOf = (person: { link?: { target: { reference: string }; assurance: string }[] }) =>
    (person.link ?? []).map((l) => `${l.target.reference}:${l.assurance}`).sort();
  const stored = async (personId: string) =>
    ((await t.db.query(`SELECT content FROM resource WHERE resource_type = 'Person' AND id = $1`, [personId])) as { content: { active?: boolean; link?: { target: { reference: string }; assurance: string }[] } }[])[0].content;
  const noMatches = async (patients: string[]) =>
    ((await t.db.query(`SELECT patient_id || '~' || candidate_id AS pair FROM identity_no_match WHERE patient_id = ANY($1) OR candidate_id = ANY($1) ORDER BY 1`, [patients])) as { pair: string }[]).map((r) => r.pair);
  const pair = (x: string, y: string) => [x, y].sort().join('~');

  it('$unlink undoes a wrong automatic link at once and without data loss; the NO_MATCH decision keeps matching from relinking', async () => {
    const [a, b] = await person([0, 1], `Unlink${LETTERS}`);
    const personId = (await personOf(a))!;
    const b1 = await observation(1, b);
    const before = await as[0].get(`/fhir/Patient/${a}/$everything`);
    expect(ids(before.body)).toContain(`Observation/${b1}`);

    // Only an HIE admin; a hospital is refused.
    expect((await op(`/fhir/Person/${personId}/$unlink`, refs('patient', `Patient/${b}`), as[0])).status).toBe(403);
    expect((await op(`/fhir/Person/${personId}/$unlink`, refs('patient', `Patient/nope-${RUN}`))).status).toBe(422);
    const res = await op(`/fhir/Person/${personId}/$unlink`, refs('patient', `Patient/${b}`));
    expect(res.status).toBe(200);
    expect(res.body.parameter.map((x: { name: string; resource: { id: string } }) => [x.name, x.resource.id])).toEqual([['person', personId]]);
    expect(linksOf(res.body.parameter[0].resource)).toEqual([`Patient/${a}:level3`]);

    // At once: the next request no longer sees B's record through A, and the closure is gone.
    const after = await as[0].get(`/fhir/Patient/${a}/$everything`);
    expect(ids(after.body).filter((r) => !r.startsWith('Person/'))).toEqual([`Patient/${a}`]);
    expect(await t.db.query(`SELECT linked_id FROM patient_link WHERE patient_id = $1`, [a])).toEqual([]);
    expect(await personOf(b)).toBeUndefined();
    expect(await noMatches([a, b])).toEqual([pair(a, b)]);
    // Nothing lost: B's data is still B's, and the Person's history keeps the link that was undone.
    expect((await as[1].get(`/fhir/Observation/${b1}`)).status).toBe(200);
    const versions: { content: { link?: unknown[] } }[] = await t.db.query(`SELECT content FROM resource_history WHERE resource_type = 'Person' AND id = $1 ORDER BY version_id`, [personId]);
    expect(versions.map((v) => (v.content.link ?? []).length)).toEqual([2, 1]);

    // B's next write is matched again, and the decision holds: no relink, no review Task.
    const current = await as[1].get(`/fhir/Patient/${b}`);
    expect((await as[1].put(`/fhir/Patient/${b}`).set('Content-Type', FHIR_JSON).send(current.body)).status).toBe(200);
    await settled();
    expect(await personOf(b)).toBeUndefined();
    expect(linksOf(await stored(personId))).toEqual([`Patient/${a}:level3`]);

    // Audited as an update naming the Person and the Patient that left.
    const audited = records.find((r) => r.kind === 'operation' && r.subtype === 'unlink' && r.status === 200);
    expect(audited?.entities?.map((e) => e.reference)).toEqual([`Person/${personId}`, `Patient/${b}`]);
  });

  it('$link confirms at level4, $merge joins two Persons, $split separates them again with NO_MATCH kept', async () => {
    const [x0, x1] = await person([0, 1], `Merge${LETTERS}`);
    const [y2, y3] = await person([2, 3], `Other${LETTERS}`);
    const px = (await personOf(x0))!;
    const py = (await personOf(y2))!;
    expect(px).not.toBe(py);

    // Confirm X's automatic link: level4, decided by the admin.
    const confirmed = await op(`/fhir/Person/${px}/$link`, refs('patient', `Patient/${x1}`));
    expect(confirmed.status).toBe(200);
    expect(linksOf(confirmed.body.parameter[0].resource)).toEqual([`Patient/${x0}:level3`, `Patient/${x1}:level4`].sort());
    // A Patient of another Person is not linked over it: 422 naming $merge.
    const taken = await op(`/fhir/Person/${px}/$link`, refs('patient', `Patient/${y2}`));
    expect([taken.status, taken.body.issue[0].code, taken.body.issue[0].expression]).toEqual([422, 'business-rule', ['patient']]);

    const merged = await op(`/fhir/Person/${px}/$merge`, refs('source', `Person/${py}`));
    expect(merged.status).toBe(200);
    expect(linksOf(merged.body.parameter[0].resource)).toEqual([`Patient/${x0}:level3`, `Patient/${x1}:level4`, `Patient/${y2}:level4`, `Patient/${y3}:level4`].sort());
    expect(await stored(py)).toMatchObject({ active: false, link: [{ target: { reference: `Person/${px}` }, assurance: 'level4' }] });
    expect(await personOf(y3)).toBe(px);
    const closure = await t.db.query(`SELECT linked_id FROM patient_link WHERE patient_id = $1 AND via_person ORDER BY linked_id`, [x0]);
    expect(closure.map((r: { linked_id: string }) => r.linked_id)).toEqual([x1, y2, y3].sort());

    const split = await op(`/fhir/Person/${px}/$split`, refs('patient', `Patient/${y2}`, `Patient/${y3}`));
    expect(split.status).toBe(200);
    const [kept, made] = split.body.parameter.map((x: { resource: { id: string } }) => x.resource);
    expect([kept.id, linksOf(kept)]).toEqual([px, [`Patient/${x0}:level3`, `Patient/${x1}:level4`].sort()]);
    expect(linksOf(made)).toEqual([`Patient/${y2}:level4`, `Patient/${y3}:level4`].sort());
    expect(await personOf(y2)).toBe(made.id);
    expect(await noMatches([x0, x1])).toEqual([pair(x0, y2), pair(x0, y3), pair(x1, y2), pair(x1, y3)].sort());
    expect(await t.db.query(`SELECT linked_id FROM patient_link WHERE patient_id = $1`, [y2])).toEqual([{ linked_id: y3 }]);

    // Merging them back withdraws those decisions; an inactive (merged) Person takes no more changes.
    expect((await op(`/fhir/Person/${px}/$merge`, refs('source', `Person/${made.id}`))).status).toBe(200);
    expect(await noMatches([x0, x1])).toEqual([]);
    expect((await op(`/fhir/Person/${py}/$link`, refs('patient', `Patient/${x0}`))).status).toBe(422);
  });

  it('$link at type level makes a new Person of Patients matching did not link', async () => {
    const p0 = await create(0, patient(0, `Typelink${LETTERS}`, { birthDate: '1933-03-03' }));
    const p1 = await create(1, patient(1, `Distinct${LETTERS}`, { name: [{ family: `Distinct${LETTERS}`, given: ['Una'] }], gender: 'male', birthDate: '1944-04-04' }));
    await settled();
    expect(await personOf(p1)).toBeUndefined();
    expect((await op('/fhir/Person/$link', refs('patient', `Patient/${p0}`))).status).toBe(400);
    const res = await op('/fhir/Person/$link', refs('patient', `Patient/${p0}`, `Patient/${p1}`));
    expect(res.status).toBe(200);
    const made = res.body.parameter[0].resource;
    expect(linksOf(made)).toEqual([`Patient/${p0}:level4`, `Patient/${p1}:level4`].sort());
    expect(made.managingOrganization).toEqual({ reference: 'Organization/hie-exchange' });
    expect(await t.db.query(`SELECT custodian_org FROM resource WHERE resource_type = 'Person' AND id = $1`, [made.id])).toEqual([{ custodian_org: 'hie-exchange' }]);
    expect(await personOf(p1)).toBe(made.id);
    // The Person write went through the normal write events (post-commit), and a hospital finds it
    // by the criteria a Subscription would use (docs/identity.md, Learning that a Patient was linked).
    expect(personEvents.filter((e) => e.id === made.id)).toEqual([{ id: made.id, links: [`Patient/${p0}`, `Patient/${p1}`].sort() }]);
    const found = await as[0].get(`/fhir/Person?link=Patient/${p0}`);
    expect([found.status, ids(found.body)]).toEqual([200, [`Person/${made.id}`]]);
  });

  it('a threshold change and $rematch unlink automatic links no longer certain (a review instead) and relink when it is changed back; admin links stay', async () => {
    const config = t.app.get<IdentityConfig>(IDENTITY_CONFIG);
    // Demographics alone (no trusted id): family, given, birth date and sex weigh about 26 (upper: 24).
    const body = (org: number) => patient(org, `Rematch${LETTERS}`, { name: [{ family: `Rematch${LETTERS}`, given: ['Solveig'] }], birthDate: '1962-08-14' });
    const a = await create(0, body(0));
    const b = await create(1, body(1));
    const [c, d] = await person([2, 3], `Confirmed${LETTERS}`);
    await settled();
    const first = (await personOf(a))!;
    expect(await personOf(b)).toBe(first);
    const pc = (await personOf(c))!;
    expect((await op(`/fhir/Person/${pc}/$link`, refs('patient', `Patient/${c}`, `Patient/${d}`))).status).toBe(200);
    const rematch = async () => {
      const res = await op('/fhir/Person/$rematch', { resourceType: 'Parameters' });
      expect([res.status, res.body.parameter[0].name]).toEqual([202, 'job']);
      await jobsSettled(t.db, IDENTITY_REMATCH_QUEUE);
      await settled();
    };
    expect((await op('/fhir/Person/$rematch', { resourceType: 'Parameters' }, as[0])).status).toBe(403);

    const upper = config.thresholds.upper;
    config.thresholds.upper = 30;
    try {
      await rematch();
      expect([await personOf(a), await personOf(b)]).toEqual([undefined, undefined]);
      expect(await stored(first)).toMatchObject({ active: false });
      expect(linksOf(await stored(first))).toEqual([]);
      expect(await t.db.query(`SELECT count(*)::int AS n FROM identity_review WHERE patient_id = $1 AND candidate_id = $2`, [...[a, b].sort()])).toEqual([{ n: 1 }]);
      // Confirmed by an admin: a threshold does not undo it.
      expect([await personOf(c), await personOf(d)]).toEqual([pc, pc]);
    } finally {
      config.thresholds.upper = upper;
    }
    await rematch();
    const again = await personOf(a);
    expect(again).toBeDefined();
    expect(await personOf(b)).toBe(again);
  });

  it('$reindex of Patients rebuilds the demographics index (Patients stored before the identity migration), and $rematch then links them', async () => {
    const family = `Backfill${LETTERS}`;
    const body = (org: number) => patient(org, family, { name: [{ family, given: ['Henrike'] }], birthDate: '1971-05-17', identifier: [{ system: SSN, value: `${family}-ssn` }] });
    const config = t.app.get<AppConfig>(APP_CONFIG);
    // As before the migration: stored without index rows and never matched.
    config.identityMatchOnWrite = false;
    const [a, b] = await (async () => {
      try {
        return [await create(0, body(0)), await create(1, body(1))];
      } finally {
        config.identityMatchOnWrite = true;
      }
    })();
    await t.db.query(`DELETE FROM patient_demographics WHERE patient_id = ANY($1)`, [[a, b]]);
    const reindexer = await registerTestClient(t, { role: 'admin', organization: `idadm-hie-${RUN}`, scopes: ['system/*.*'], purposes: ['HSYSADMIN'] });
    const res = await request(t.http).post('/fhir/Patient/$reindex').set('Authorization', `Bearer ${await reindexer.token()}`).set('Content-Type', FHIR_JSON).send({ resourceType: 'Parameters' });
    expect(res.status).toBe(200);
    const rows = await t.db.query(`SELECT patient_id, custodian_org, family, birth_date FROM patient_demographics WHERE patient_id = ANY($1) ORDER BY custodian_org`, [[a, b]]);
    expect(rows).toEqual([
      { patient_id: a, custodian_org: ORG[0], family: [family.toLowerCase()], birth_date: '1971-05-17' },
      { patient_id: b, custodian_org: ORG[1], family: [family.toLowerCase()], birth_date: '1971-05-17' },
    ]);
    expect([await personOf(a), await personOf(b)]).toEqual([undefined, undefined]);
    expect((await op('/fhir/Person/$rematch', { resourceType: 'Parameters' })).status).toBe(202);
    await jobsSettled(t.db, IDENTITY_REMATCH_QUEUE);
    await settled();
    const p = await personOf(a);
    expect(p).toBeDefined();
    expect(await personOf(b)).toBe(p);
  });

  it('$ihe-pix returns the identifiers and ids of the person at every organization the caller may see', async () => {
    const family = `Pix${LETTERS}`;
    const mrn = (org: number) => ({ system: `http://${ORG[org]}.example.org/mrn`, value: `${family}-${org}` });
    const ssn = { system: SSN, value: `${family}-ssn` };
    const [a, b, c] = [await create(0, patient(0, family, { identifier: [mrn(0), ssn] })), await create(1, patient(1, family, { identifier: [mrn(1), ssn] })), await create(2, patient(2, family, { identifier: [mrn(2), ssn] }))];
    await settled();
    expect(await personOf(c)).toBe(await personOf(a));
    // At C the person denies organization B: it follows the person to A's record.
    created(await as[2].post('/fhir/Consent').set('Content-Type', FHIR_JSON).send(consentResource(c, { type: 'deny', actor: recipient(1) })));
    const pix = (org: number, query: string) => as[org].get(`/fhir/Patient/$ihe-pix?${query}`);
    const answer = (res: request.Response) => ({
      status: res.status,
      targetId: (res.body.parameter ?? []).filter((x: { name: string }) => x.name === 'targetId').map((x: { valueReference: { reference: string } }) => x.valueReference.reference),
      targetIdentifier: (res.body.parameter ?? []).filter((x: { name: string }) => x.name === 'targetIdentifier').map((x: { valueIdentifier: { system: string; value: string } }) => `${x.valueIdentifier.system}|${x.valueIdentifier.value}`).sort(),
    });
    const token = (x: { system: string; value: string }) => `${x.system}|${x.value}`;

    expect(answer(await pix(0, `sourceIdentifier=${encodeURIComponent(token(mrn(0)))}`))).toEqual({
      status: 200,
      targetId: [a, b, c].sort().map((x) => `Patient/${x}`),
      targetIdentifier: [token(ssn), token(mrn(1)), token(ssn), token(mrn(2)), token(ssn)].sort(),
    });
    expect(answer(await pix(0, `sourceIdentifier=${encodeURIComponent(token(mrn(0)))}&targetSystem=${encodeURIComponent(mrn(2).system)}`))).toEqual({
      status: 200,
      targetId: [`Patient/${c}`],
      targetIdentifier: [token(mrn(2))],
    });
    // Organization B sees only its own record of the person: the others are neither returned nor audited.
    const fromB = await pix(1, `sourceIdentifier=${encodeURIComponent(token(mrn(1)))}`);
    expect(answer(fromB)).toEqual({ status: 200, targetId: [`Patient/${b}`], targetIdentifier: [token(ssn)] });
    const audited = records.filter((r) => r.kind === 'operation' && r.subtype === 'ihe-pix' && r.principal.organization === ORG[1]);
    expect(audited.map((r) => r.entities?.map((e) => e.reference))).toEqual([[`Patient/${b}`]]);
    expect((await pix(1, `sourceIdentifier=${encodeURIComponent(token(mrn(0)))}`)).status).toBe(404);
    const bad = await pix(0, 'sourceIdentifier=no-system');
    expect([bad.status, bad.body.issue[0].code, bad.body.issue[0].expression]).toEqual([400, 'invalid', ['sourceIdentifier']]);
  });
});
