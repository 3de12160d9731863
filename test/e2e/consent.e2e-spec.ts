import request from 'supertest';
import type { AuditRecord } from '../../src/fhir/pipeline/audit-record';
import { captureAuditRecords } from '../support/audit';
import { toAuditEventRow } from '../../src/audit/audit-event.builder';
import { registerTestClient, TestClient } from '../support/auth';
import { createdId, FHIR_JSON, hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

const RUN = Date.now().toString(36);
const ORG_A = `consent-a-${RUN}`; // authors every patient's data
const ORG_B = `consent-b-${RUN}`; // another organization
const ORG_C = `consent-c-${RUN}`; // named in consents
const ACT = 'http://terminology.hl7.org/CodeSystem/v3-ActCode';
const HIV = { system: ACT, code: 'HIV' };
const RESTRICTED = { system: 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality', code: 'R' };
const DAY = 86_400_000;
const iso = (offsetDays: number) => new Date(Date.now() + offsetDays * DAY).toISOString();

type Provision = Record<string, unknown>;
const actor = (org: string) => ({ role: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'IRCP' }] }, reference: { reference: `Organization/${org}` } });
/** An individual or team actor (Practitioner/…, PractitionerRole/…, CareTeam/…), matched against the token's on_behalf_of. */
const individual = (ref: string) => ({ ...actor('x'), reference: { reference: ref } });
const LOINC = 'http://loinc.org';
const SYSTOLIC = { system: LOINC, code: '8480-6' };
const purpose = (code: string) => ({ system: 'http://terminology.hl7.org/CodeSystem/v3-ActReason', code });

function consent(patient: string, provision: Provision, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    resourceType: 'Consent',
    status: 'active',
    scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
    category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
    patient: { reference: `Patient/${patient}` },
    dateTime: '2026-01-01T00:00:00Z',
    policyRule: { coding: [{ system: ACT, code: 'OPTOUT' }] },
    provision,
    ...extra,
  };
}

/** Observations effective at an instant of 2019, in the year 2019 (year precision), in 2023; an Encounter from 30 Dec 2018 to 2 Jan 2019. */
type Dated = 'obs-2019' | 'obs-year-2019' | 'obs-2023' | 'enc-2018-2019';
const DATED: Record<Dated, Record<string, unknown>> = {
  'obs-2019': { resourceType: 'Observation', status: 'final', code: { text: 'dated' }, effectiveDateTime: '2019-06-01T10:00:00+02:00' },
  'obs-year-2019': { resourceType: 'Observation', status: 'final', code: { text: 'dated' }, effectiveDateTime: '2019' },
  'obs-2023': { resourceType: 'Observation', status: 'final', code: { text: 'dated' }, effectivePeriod: { start: '2023-03-01', end: '2023-03-02' } },
  'enc-2018-2019': { resourceType: 'Encounter', status: 'finished', class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'IMP' }, period: { start: '2018-12-30', end: '2019-01-02' } },
};
/** "My 2019 records": Period.end is inclusive, so the period runs to the end of 31 Dec 2019. */
const YEAR_2019 = { start: '2019-01-01', end: '2019-12-31' };

type Http = ReturnType<TestApp['app']['getHttpServer']>;
type Send = (m: 'get' | 'post' | 'put' | 'delete', path: string) => request.Test;

/** A client of an organization speaking to one app node, with a token per purpose (ETREAT with a reason), optionally on behalf of someone. */
async function as(http: Http, client: TestClient, purposeOfUse = 'TREAT', onBehalfOf?: string): Promise<Send> {
  const token = await client.token('system/*.cruds', purposeOfUse, onBehalfOf);
  return (m, path) => {
    const r = request(http)[m](path).set('Authorization', `Bearer ${token}`);
    return purposeOfUse === 'ETREAT' ? r.set('X-Break-Glass-Reason', 'unconscious patient in the emergency room') : r;
  };
}

describe('consent-checked access', () => {
  // Two nodes with the default opt-out policy on one database, and one with opt-in.
  let node1: TestApp;
  let node2: TestApp;
  let optIn: TestApp;
  const clients: Record<string, TestClient> = {};
  let a1: Send;
  const pt: Record<string, string> = {};
  const obs: Record<string, string> = {};
  const hiv: Record<string, string> = {};
  const coded: Record<string, string> = {}; // an Observation coded LOINC 8480-6 (systolic blood pressure)
  // Clinically dated data (P16, P17): all uploaded today, about care in 2019, 2023, or across New Year 2019.
  const dated: Record<string, Record<Dated, string>> = {};
  const consents: Record<string, string> = {};
  const records: AuditRecord[] = [];

  const patient = async (name: string) => createdId(await a1('post', '/fhir/Patient').set('Content-Type', FHIR_JSON).send(hiePatient({ name: [{ family: `Consent${name}${RUN}` }] })));
  const observation = async (p: string, security: unknown[] = [], text = 'consent test', coding: unknown[] = []) =>
    createdId(
      await a1('post', '/fhir/Observation')
        .set('Content-Type', FHIR_JSON)
        .send({ resourceType: 'Observation', status: 'final', meta: { security }, code: { text, coding }, subject: { reference: `Patient/${p}` } }),
    );
  const writeConsent = async (name: string, provision: Provision, extra: Record<string, unknown> = {}) => {
    consents[name] = await createdId(await a1('post', '/fhir/Consent').set('Content-Type', FHIR_JSON).send(consent(pt[name], provision, extra)));
  };

  beforeAll(async () => {
    node1 = await createTestApp();
    node2 = await createTestApp();
    process.env.CONSENT_BASE_POLICY = 'opt-in';
    try {
      optIn = await createTestApp();
    } finally {
      delete process.env.CONSENT_BASE_POLICY;
    }
    for (const [key, org] of [['A', ORG_A], ['B', ORG_B], ['C', ORG_C]]) {
      clients[key] = await registerTestClient(node1, { role: 'hospital', organization: org, scopes: ['system/*.cruds'], purposes: ['TREAT', 'HPAYMT', 'ETREAT'] });
    }
    a1 = await as(node1.http, clients.A);
    for (const name of ['P16', 'P17']) {
      pt[name] = await patient(name);
      dated[name] = {} as Record<Dated, string>;
      for (const [kind, body] of Object.entries(DATED)) {
        const subject = { reference: `Patient/${pt[name]}` };
        dated[name][kind as Dated] = await createdId(await a1('post', `/fhir/${body.resourceType as string}`).set('Content-Type', FHIR_JSON).send({ ...body, subject }));
      }
      obs[name] = await observation(pt[name]);
    }
    for (const name of ['P0', 'P1', 'P2', 'P3', 'P4', 'P5', 'P6', 'P7', 'P8', 'P9', 'P10', 'P11', 'P12', 'P13', 'P14', 'P15']) {
      pt[name] = await patient(name);
      obs[name] = await observation(pt[name]);
      hiv[name] = await observation(pt[name], [HIV]);
      coded[name] = await observation(pt[name], [], 'systolic', [SYSTOLIC]);
    }
    obs.R = await observation(pt.P0, [RESTRICTED]);
    // P1: the patient objects to all sharing.
    await writeConsent('P1', { type: 'deny' });
    // P2: denies all, except (nested) organization C.
    await writeConsent('P2', { type: 'deny', provision: [{ type: 'permit', actor: [actor(ORG_C)] }] });
    // P3: permits C for data recorded until yesterday only (data period).
    await writeConsent('P3', { type: 'permit', actor: [actor(ORG_C)], dataPeriod: { end: iso(-1) } });
    // P4: an inactive denial; P5: a denial that expired; P7: one that starts tomorrow.
    await writeConsent('P4', { type: 'deny' }, { status: 'inactive' });
    await writeConsent('P5', { type: 'deny', period: { start: iso(-10), end: iso(-1) } });
    await writeConsent('P7', { type: 'deny', period: { start: iso(1) } });
    // P6: an explicit permit of HIV-labelled data to C.
    await writeConsent('P6', { type: 'permit', actor: [actor(ORG_C)], securityLabel: [HIV] });
    // P8: permits B, except for payment.
    await writeConsent('P8', { type: 'permit', actor: [actor(ORG_B)], provision: [{ type: 'deny', purpose: [purpose('HPAYMT')] }] });
    // P9: an inactive permit of everything (no effect under opt-in).
    await writeConsent('P9', { type: 'permit' }, { status: 'inactive' });
    // P10: a denial superseded by its next version, a permit.
    await writeConsent('P10', { type: 'deny' });
    const v1 = await a1('get', `/fhir/Consent/${consents.P10}`);
    expect((await a1('put', `/fhir/Consent/${consents.P10}`).set('Content-Type', FHIR_JSON).send({ ...v1.body, provision: { type: 'permit' } })).status).toBe(200);
    // P12: denies data coded systolic blood pressure (provision.code), for everyone.
    await writeConsent('P12', { type: 'deny', code: [{ coding: [SYSTOLIC] }] });
    // P13: denies one clinician (Practitioner, or that clinician's PractitionerRole).
    await writeConsent('P13', { type: 'deny', actor: [individual('Practitioner/dr-x'), individual('PractitionerRole/dr-x-cardio')] });
    // P14: permits C only the systolic readings (opt-in).
    await writeConsent('P14', { type: 'permit', actor: [actor(ORG_C)], code: [{ coding: [{ system: LOINC, code: '8480-6' }, { system: LOINC, code: '2345-7' }] }] });
    // P15: permits one care team (opt-in), except (nested) its payment requests.
    await writeConsent('P15', { type: 'permit', actor: [individual('CareTeam/team-1')], provision: [{ type: 'deny', purpose: [purpose('HPAYMT')] }] });
    // P16: "hide my 2019 records" (a denial with a data period), for everyone.
    await writeConsent('P16', { type: 'deny', dataPeriod: YEAR_2019 });
    // P17: permits C only the care of 2019 (opt-in).
    await writeConsent('P17', { type: 'permit', actor: [actor(ORG_C)], dataPeriod: YEAR_2019 });
    // P11: a denial that was deleted.
    await writeConsent('P11', { type: 'deny' });
    expect((await a1('delete', `/fhir/Consent/${consents.P11}`)).status).toBe(200);

    for (const node of [node1, node2, optIn]) captureAuditRecords(node.app, records);
  }, 120_000);
  afterAll(async () => {
    await node1?.close();
    await node2?.close();
    await optIn?.close();
  });
  beforeEach(() => {
    records.length = 0;
  });

  describe('decision matrix', () => {
    type Case = [policy: 'opt-out' | 'opt-in', requester: 'A' | 'B' | 'C', purpose: string, patient: string, data: 'obs' | 'hiv' | 'R' | 'coded' | Dated, visible: boolean, why: string, onBehalfOf?: string];
    const cases: Case[] = [
      // own organization: always
      ['opt-out', 'A', 'TREAT', 'P1', 'obs', true, 'own data despite a denial'],
      ['opt-out', 'A', 'HPAYMT', 'P0', 'hiv', true, 'own sensitive data'],
      ['opt-in', 'A', 'TREAT', 'P0', 'obs', true, 'own data under opt-in'],
      ['opt-in', 'A', 'TREAT', 'P1', 'hiv', true, 'own sensitive data under a denial'],
      // no consent: the base policy
      ['opt-out', 'B', 'TREAT', 'P0', 'obs', true, 'opt-out shares treatment'],
      ['opt-out', 'B', 'HPAYMT', 'P0', 'obs', false, 'opt-out does not share payment'],
      ['opt-in', 'B', 'TREAT', 'P0', 'obs', false, 'opt-in shares nothing unpermitted'],
      ['opt-out', 'B', 'TREAT', 'P0', 'hiv', false, 'sensitive label needs an explicit permit'],
      ['opt-out', 'B', 'TREAT', 'P0', 'R', false, 'restricted confidentiality needs an explicit permit'],
      // a denial
      ['opt-out', 'B', 'TREAT', 'P1', 'obs', false, 'patient denied all'],
      ['opt-out', 'C', 'TREAT', 'P1', 'obs', false, 'patient denied all (C too)'],
      ['opt-in', 'B', 'TREAT', 'P1', 'obs', false, 'denied under opt-in'],
      // nested exception
      ['opt-out', 'C', 'TREAT', 'P2', 'obs', true, 'nested permit for C overrides the root denial'],
      ['opt-out', 'B', 'TREAT', 'P2', 'obs', false, 'root denial for everyone else'],
      ['opt-out', 'C', 'HPAYMT', 'P2', 'obs', true, 'the permit names no purpose'],
      ['opt-in', 'C', 'TREAT', 'P2', 'obs', true, 'nested permit under opt-in'],
      ['opt-out', 'C', 'TREAT', 'P2', 'hiv', false, 'a permit without the label does not open sensitive data'],
      // data period
      ['opt-out', 'C', 'HPAYMT', 'P3', 'obs', false, 'data recorded today is outside the permitted data period'],
      ['opt-out', 'C', 'TREAT', 'P3', 'obs', true, 'outside the data period the base policy decides'],
      ['opt-in', 'C', 'TREAT', 'P3', 'obs', false, 'outside the data period under opt-in'],
      // consent status and period
      ['opt-out', 'B', 'TREAT', 'P4', 'obs', true, 'an inactive denial has no effect'],
      ['opt-out', 'B', 'TREAT', 'P5', 'obs', true, 'an expired denial has no effect'],
      ['opt-out', 'B', 'TREAT', 'P7', 'obs', true, 'a denial not yet in force has no effect'],
      ['opt-in', 'B', 'TREAT', 'P9', 'obs', false, 'an inactive permit has no effect'],
      ['opt-out', 'B', 'TREAT', 'P10', 'obs', true, 'a superseded denial has no effect'],
      ['opt-in', 'B', 'TREAT', 'P10', 'obs', true, 'the version in force permits'],
      ['opt-out', 'B', 'TREAT', 'P11', 'obs', true, 'a deleted denial has no effect'],
      // security label permits
      ['opt-out', 'C', 'TREAT', 'P6', 'hiv', true, 'explicit HIV permit for C'],
      ['opt-out', 'C', 'HPAYMT', 'P6', 'hiv', true, 'the HIV permit names no purpose'],
      ['opt-out', 'B', 'TREAT', 'P6', 'hiv', false, 'the HIV permit is for C only'],
      ['opt-in', 'C', 'TREAT', 'P6', 'hiv', true, 'explicit HIV permit under opt-in'],
      ['opt-in', 'C', 'TREAT', 'P6', 'obs', false, 'the HIV permit does not cover unlabelled data'],
      ['opt-out', 'C', 'HPAYMT', 'P6', 'obs', false, 'unlabelled data for payment: base policy'],
      // purpose exceptions
      ['opt-in', 'B', 'TREAT', 'P8', 'obs', true, 'permit for B'],
      ['opt-in', 'B', 'HPAYMT', 'P8', 'obs', false, 'nested denial of payment'],
      ['opt-in', 'C', 'TREAT', 'P8', 'obs', false, 'the permit is for B only'],
      // break-the-glass
      ['opt-out', 'B', 'ETREAT', 'P1', 'obs', true, 'break-the-glass overrides a denial'],
      ['opt-in', 'B', 'ETREAT', 'P0', 'obs', true, 'break-the-glass overrides opt-in'],
      ['opt-out', 'B', 'ETREAT', 'P1', 'hiv', false, 'break-the-glass does not open sensitive labels'],
      ['opt-out', 'B', 'ETREAT', 'P0', 'R', false, 'nor restricted confidentiality'],
      ['opt-out', 'C', 'ETREAT', 'P6', 'hiv', true, 'break-the-glass with an explicit permit'],
      ['opt-out', 'B', 'ETREAT', 'P2', 'obs', true, 'break-the-glass over a root denial'],
      // provision.code: only rows whose code index holds the Coding
      ['opt-out', 'B', 'TREAT', 'P12', 'coded', false, 'denied code'],
      ['opt-out', 'B', 'TREAT', 'P12', 'obs', true, 'other codes: base policy'],
      ['opt-out', 'B', 'TREAT', 'P0', 'coded', true, 'the coded row without a Consent'],
      ['opt-out', 'A', 'TREAT', 'P12', 'coded', true, 'own data despite a code denial'],
      ['opt-out', 'B', 'ETREAT', 'P12', 'coded', true, 'break-the-glass over a code denial'],
      ['opt-in', 'C', 'TREAT', 'P14', 'coded', true, 'permitted code (one of two Codings)'],
      ['opt-in', 'C', 'TREAT', 'P14', 'obs', false, 'the code permit does not cover other data'],
      ['opt-in', 'B', 'TREAT', 'P14', 'coded', false, 'the code permit is for C only'],
      // individual actors: matched against the token's on_behalf_of
      ['opt-out', 'B', 'TREAT', 'P13', 'obs', false, 'denied clinician', 'Practitioner/dr-x'],
      ['opt-out', 'B', 'TREAT', 'P13', 'obs', false, 'denied clinician through a role', 'PractitionerRole/dr-x-cardio'],
      ['opt-out', 'B', 'TREAT', 'P13', 'obs', false, 'denied clinician among several declared', 'Practitioner/dr-y Practitioner/dr-x'],
      ['opt-out', 'B', 'TREAT', 'P13', 'obs', true, 'another clinician', 'Practitioner/dr-y'],
      ['opt-out', 'B', 'TREAT', 'P13', 'obs', false, 'no one declared: a denial of an individual is not evaded by omission'],
      ['opt-out', 'A', 'TREAT', 'P13', 'obs', true, 'own data despite an individual denial', 'Practitioner/dr-x'],
      ['opt-in', 'B', 'TREAT', 'P15', 'obs', true, 'permitted care team', 'CareTeam/team-1'],
      ['opt-in', 'C', 'TREAT', 'P15', 'obs', true, 'the team permit names no organization', 'CareTeam/team-1'],
      ['opt-in', 'B', 'TREAT', 'P15', 'obs', false, 'another team', 'CareTeam/team-2'],
      ['opt-in', 'B', 'TREAT', 'P15', 'obs', false, 'no one declared: a permit of an individual needs the declaration'],
      ['opt-in', 'B', 'HPAYMT', 'P15', 'obs', false, 'nested denial of the team\'s payment requests', 'CareTeam/team-1'],
      ['opt-in', 'B', 'TREAT', 'P15', 'hiv', false, 'a team permit without the label does not open sensitive data', 'CareTeam/team-1'],
      // dataPeriod on the clinical date, not the upload date (everything below was uploaded today)
      ['opt-out', 'B', 'TREAT', 'P16', 'obs-2019', false, 'care in 2019 is hidden'],
      ['opt-out', 'B', 'TREAT', 'P16', 'obs-year-2019', false, 'a date of year precision in 2019 is hidden'],
      ['opt-out', 'B', 'TREAT', 'P16', 'enc-2018-2019', false, 'an encounter overlapping 2019 is hidden'],
      ['opt-out', 'B', 'TREAT', 'P16', 'obs-2023', true, 'care in 2023 is not'],
      ['opt-out', 'B', 'TREAT', 'P16', 'obs', true, 'no clinical date: the upload date (today) decides'],
      ['opt-out', 'A', 'TREAT', 'P16', 'obs-2019', true, 'own data despite the data-period denial'],
      ['opt-in', 'C', 'TREAT', 'P17', 'obs-2019', true, 'care in 2019 is permitted'],
      ['opt-in', 'C', 'TREAT', 'P17', 'obs-year-2019', true, 'the whole year 2019 lies inside the permitted period'],
      ['opt-in', 'C', 'TREAT', 'P17', 'enc-2018-2019', false, 'an encounter reaching into 2018 is not wholly inside the permit'],
      ['opt-in', 'C', 'TREAT', 'P17', 'obs-2023', false, 'care in 2023 is not permitted'],
      ['opt-in', 'C', 'TREAT', 'P17', 'obs', false, 'no clinical date: uploaded today, outside the permit'],
    ];

    /** Cases that ran against the server and passed, with the status it answered and the decision it audited. */
    const ran = new Map<string, { status: number; basis: string }>();

    // Every case with 8 arguments (on behalf of no one: '-'); a 7-argument case would make Jest pass `done` as the 8th.
    const rows = cases.map(([policy, requester, purposeOfUse, p, data, visible, why, onBehalfOf]) => [policy, requester, purposeOfUse, p, data, visible, why, onBehalfOf ?? '-'] as const);
    it.each(rows)('%s, org %s, %s, %s %s: visible=%s (%s) on behalf of %s', async (policy, requester, purposeOfUse, p, data, visible, _why, declared) => {
      const onBehalfOf = declared === '-' ? undefined : declared;
      const node = policy === 'opt-in' ? optIn : node2;
      const send = await as(node.http, clients[requester], purposeOfUse, onBehalfOf);
      const id = data === 'obs' ? obs[p] : data === 'hiv' ? hiv[p] : data === 'coded' ? coded[p] : data === 'R' ? obs.R : dated[p][data];
      const type = data === 'enc-2018-2019' ? 'Encounter' : 'Observation';
      const read = await send('get', `/fhir/${type}/${id}`);
      expect(read.status).toBe(visible ? 200 : 404);
      if (!visible) expect(read.body.issue[0]).toMatchObject({ code: 'not-found', diagnostics: `${type}/${id} is not known` });
      const search = await send('get', `/fhir/${type}?_id=${id}&_total=accurate`);
      expect([search.status, search.body.total, (search.body.entry ?? []).length]).toEqual([200, visible ? 1 : 0, visible ? 1 : 0]);
      const record = records.find((r) => r.kind === 'read')!;
      expect(record.accessBasis[0]).toMatch(new RegExp(`^consent: policy ${policy}`));
      expect(record.purposeOfUse).toBe(purposeOfUse);
      expect(record.breakGlassReason).toBe(purposeOfUse === 'ETREAT' ? 'unconscious patient in the emergency room' : undefined);
      ran.set([policy, requester, purposeOfUse, p, data, declared].join(' '), { status: read.status, basis: record.accessBasis.join('; ') });
    });

    it('ran at least 40 distinct decision cases against the server, both outcomes among them', () => {
      // Counted from what ran (above), not from the table: a filtered, skipped or failed case does not count.
      expect(ran.size).toBeGreaterThanOrEqual(40);
      expect(ran.size).toBe(cases.length);
      const statuses = [...ran.values()].map((r) => r.status);
      expect([statuses.filter((s) => s === 200).length, statuses.filter((s) => s === 404).length]).toEqual([
        cases.filter((c) => c[5]).length,
        cases.filter((c) => !c[5]).length,
      ]);
      expect(Math.min(...[200, 404].map((s) => statuses.filter((x) => x === s).length))).toBeGreaterThan(10);
      // Each was decided by the server and audited with its basis (a Consent, the base policy or break-the-glass).
      expect([...ran.values()].every((r) => /^consent: policy opt-(out|in)/.test(r.basis))).toBe(true);
    });
  });

  it('the audit record of a read names the Consent, version and provision that decided it', async () => {
    const c = await as(node2.http, clients.C);
    expect((await c('get', `/fhir/Observation/${obs.P2}`)).status).toBe(200);
    expect((await c('get', `/fhir/Observation/${obs.P1}`)).status).toBe(404);
    expect((await c('get', `/fhir/Observation/${obs.P0}`)).status).toBe(200);
    const basis = records.filter((r) => r.kind === 'read').map((r) => r.accessBasis);
    expect(basis).toEqual([
      [`consent: policy opt-out (TREAT shared unless denied); Observation/${obs.P2}: Patient/${pt.P2} by Consent/${consents.P2}/_history/1#provision.provision[0] permit`],
      [`consent: policy opt-out (TREAT shared unless denied); Observation/${obs.P1}: Patient/${pt.P1} by Consent/${consents.P1}/_history/1#provision deny`],
      [`consent: policy opt-out (TREAT shared unless denied); Observation/${obs.P0}: Patient/${pt.P0} by base policy`],
    ]);
    const bg = await as(node2.http, clients.B, 'ETREAT');
    expect((await bg('get', `/fhir/Observation/${obs.P1}`)).status).toBe(200);
    const flagged = records.filter((r) => r.kind === 'read').at(-1)!;
    expect(flagged.breakGlassReason).toBe('unconscious patient in the emergency room');
    expect(flagged.accessBasis[0]).toContain('break-the-glass overrides patient denials, not sensitive labels');
  });

  it('a read on behalf of a denied clinician is explained by that provision and the audit record names the clinician', async () => {
    const drX = await as(node2.http, clients.B, 'TREAT', 'Practitioner/dr-x');
    expect((await drX('get', `/fhir/Observation/${obs.P13}`)).status).toBe(404);
    const read = records.filter((r) => r.kind === 'read').at(-1)!;
    expect(read.accessBasis).toEqual([
      `consent: policy opt-out (TREAT shared unless denied); Observation/${obs.P13}: Patient/${pt.P13} by Consent/${consents.P13}/_history/1#provision deny`,
    ]);
    expect(read.principal.onBehalfOf).toEqual(['Practitioner/dr-x']);
    const event = toAuditEventRow(read, 'n1');
    expect(event.content.agent.filter((a) => a.who?.reference).map((a) => a.who!.reference)).toEqual([`Organization/${ORG_B}`, 'Practitioner/dr-x']);
    expect(event.agent).toEqual([clients.B.clientId, `Organization/${ORG_B}`, 'Practitioner/dr-x']);
    const c = await as(node2.http, clients.C);
    expect((await c('get', `/fhir/Observation/${coded.P12}`)).status).toBe(404);
    expect(records.filter((r) => r.kind === 'read').at(-1)!.accessBasis[0]).toContain(`Observation/${coded.P12}: Patient/${pt.P12} by Consent/${consents.P12}/_history/1#provision deny`);
  });

  it('on_behalf_of must name 1 to 5 Practitioner, PractitionerRole or CareTeam references', async () => {
    for (const value of ['Patient/p1', 'Practitioner/', 'Organization/o1', ' ', 'Practitioner/a Practitioner/b Practitioner/c Practitioner/d Practitioner/e CareTeam/f']) {
      const res = await request(node1.http)
        .post('/oauth2/token')
        .type('form')
        .send({ grant_type: 'client_credentials', client_id: clients.B.clientId, client_secret: clients.B.secret, scope: 'system/*.rs', on_behalf_of: value });
      expect([value, res.status, res.body.error]).toEqual([value, 400, 'invalid_request']);
    }
  });

  it('paging: 100 matches of which 37 are denied give full pages of the 63 others and _total=accurate 63', async () => {
    const p = await patient('Paging');
    const entry = Array.from({ length: 100 }, (_, n) => ({
      fullUrl: `urn:uuid:00000000-0000-4000-8000-${String(n).padStart(12, '0')}`,
      resource: { resourceType: 'Observation', status: 'final', code: { text: `paging ${n}` }, subject: { reference: `Patient/${p}` } },
      request: { method: 'POST', url: 'Observation' },
    }));
    const bundle = await a1('post', '/fhir').set('Content-Type', FHIR_JSON).send({ resourceType: 'Bundle', type: 'transaction', entry });
    expect(bundle.status).toBe(200);
    const ids: string[] = bundle.body.entry.map((e: { response: { location: string } }) => /Observation\/([^/]+)/.exec(e.response.location)![1]);
    // 37 specific resources spread over the id order, denied by data references (provision.data).
    const denied = ids.filter((_, n) => n % 3 === 0).slice(0, 34).concat(ids.filter((_, n) => n % 3 === 1).slice(0, 3));
    expect(new Set(denied).size).toBe(37);
    const data = denied.map((id) => ({ meaning: 'instance', reference: { reference: `Observation/${id}` } }));
    expect((await a1('post', '/fhir/Consent').set('Content-Type', FHIR_JSON).send(consent(p, { type: 'deny', data }))).status).toBe(201);

    const b = await as(node2.http, clients.B);
    const seen: string[] = [];
    const sizes: number[] = [];
    let url: string | undefined = `/fhir/Observation?subject=Patient/${p}&_count=10&_total=accurate`;
    let total = -1;
    while (url) {
      const res = await b('get', url);
      expect(res.status).toBe(200);
      if (total < 0) total = res.body.total;
      const page = (res.body.entry ?? []).map((e: { resource: { id: string } }) => e.resource.id);
      sizes.push(page.length);
      seen.push(...page);
      url = res.body.link.find((l: { relation: string }) => l.relation === 'next')?.url.replace(/^https?:\/\/[^/]+/, '');
    }
    expect(total).toBe(63);
    expect(sizes).toEqual([10, 10, 10, 10, 10, 10, 3]);
    expect(new Set(seen).size).toBe(63);
    expect(seen.filter((id) => denied.includes(id))).toEqual([]);
    // The owner still sees all 100.
    expect((await a1('get', `/fhir/Observation?subject=Patient/${p}&_summary=count`)).body.total).toBe(100);
  }, 60_000);

  it('_include, _revinclude, chains and _has never return or match a denied resource', async () => {
    const b = await as(node2.http, clients.B);
    // B's own Observation about P1 (who denied sharing): B sees its own data, never P1's.
    const own = await createdId(
      await b('post', '/fhir/Observation').set('Content-Type', FHIR_JSON).send({ resourceType: 'Observation', status: 'final', code: { text: 'b own' }, subject: { reference: `Patient/${pt.P1}` } }),
    );
    const ids = (res: request.Response, mode: string) => (res.body.entry ?? []).filter((e: { search: { mode: string } }) => e.search.mode === mode).map((e: { resource: { resourceType: string; id: string } }) => `${e.resource.resourceType}/${e.resource.id}`).sort();
    const include = await b('get', `/fhir/Observation?_id=${own}&_include=Observation:subject`);
    expect([ids(include, 'match'), ids(include, 'include')]).toEqual([[`Observation/${own}`], []]);
    const visibleInclude = await b('get', `/fhir/Observation?_id=${obs.P0}&_include=Observation:subject`);
    expect(ids(visibleInclude, 'include')).toEqual([`Patient/${pt.P0}`]);
    const rev = await b('get', `/fhir/Patient?_id=${pt.P0}&_revinclude=Observation:subject`);
    expect(ids(rev, 'include')).toEqual([`Observation/${obs.P0}`, `Observation/${coded.P0}`].sort()); // not the HIV or restricted ones
    const revDenied = await b('get', `/fhir/Patient?_id=${pt.P1}&_revinclude=Observation:subject`);
    expect([ids(revDenied, 'match'), ids(revDenied, 'include')]).toEqual([[], []]);
    // A chain through the denied Patient does not match, even from B's own Observation.
    const chain = await b('get', `/fhir/Observation?subject:Patient.family=ConsentP1${RUN}`);
    expect(ids(chain, 'match')).toEqual([]);
    const chainVisible = await b('get', `/fhir/Observation?subject:Patient.family=ConsentP0${RUN}`);
    expect(ids(chainVisible, 'match')).toEqual([`Observation/${obs.P0}`, `Observation/${coded.P0}`].sort());
    // _has on a denied (sensitive) Observation does not match its visible Patient.
    const has = await b('get', `/fhir/Patient?_has:Observation:subject:_security=${ACT}|HIV&_id=${pt.P0}`);
    expect(ids(has, 'match')).toEqual([]);
    const c = await as(node2.http, clients.C);
    const hasPermitted = await c('get', `/fhir/Patient?_has:Observation:subject:_security=${ACT}|HIV&_id=${pt.P6}`);
    expect(ids(hasPermitted, 'match')).toEqual([`Patient/${pt.P6}`]);
  });

  it('vread and history judge each version on its own labels', async () => {
    const b = await as(node2.http, clients.B);
    // v1 labelled HIV, v2 without the label: v1 stays denied, v2 is visible.
    const id = await observation(pt.P0, [HIV], 'relabelled');
    const v1 = await a1('get', `/fhir/Observation/${id}`);
    expect((await a1('put', `/fhir/Observation/${id}`).set('Content-Type', FHIR_JSON).send({ ...v1.body, meta: { security: [] } })).status).toBe(200);
    // w: v1 unlabelled, v2 labelled: the current version is denied, v1 is not.
    const w = await observation(pt.P0, [], 'labelled later');
    const w1 = await a1('get', `/fhir/Observation/${w}`);
    expect((await a1('put', `/fhir/Observation/${w}`).set('Content-Type', FHIR_JSON).send({ ...w1.body, meta: { security: [HIV] } })).status).toBe(200);

    const status = async (path: string) => (await b('get', path)).status;
    expect(await status(`/fhir/Observation/${id}`)).toBe(200);
    expect(await status(`/fhir/Observation/${id}/_history/1`)).toBe(404);
    expect(await status(`/fhir/Observation/${id}/_history/2`)).toBe(200);
    const history = await b('get', `/fhir/Observation/${id}/_history`);
    expect([history.body.total, history.body.entry.map((e: { response: { etag: string } }) => e.response.etag)]).toEqual([1, ['W/"2"']]);
    expect(await status(`/fhir/Observation/${w}`)).toBe(404);
    expect(await status(`/fhir/Observation/${w}/_history/1`)).toBe(200);
    expect(await status(`/fhir/Observation/${w}/_history/2`)).toBe(404);
    // The audit record explains the version asked for.
    const vread = records.filter((r) => r.kind === 'vread' && r.principal.clientId === clients.B.clientId);
    expect(vread[0].accessBasis[0]).toContain(`Observation/${id}/_history/1: Patient/${pt.P0} by base policy`);
  });

  it('vread and history judge dataPeriod on each version\'s own clinical date', async () => {
    const b = await as(node2.http, clients.B);
    // v1 about care in 2019 (hidden under P16's denial), v2 corrected to 2023 (visible).
    const id = await createdId(await a1('post', '/fhir/Observation').set('Content-Type', FHIR_JSON).send({ ...DATED['obs-2019'], subject: { reference: `Patient/${pt.P16}` } }));
    const v1 = await a1('get', `/fhir/Observation/${id}`);
    const { effectiveDateTime: _dropped, ...rest } = v1.body;
    expect((await a1('put', `/fhir/Observation/${id}`).set('Content-Type', FHIR_JSON).send({ ...rest, effectiveDateTime: '2023-05-01' })).status).toBe(200);
    expect((await b('get', `/fhir/Observation/${id}`)).status).toBe(200);
    expect((await b('get', `/fhir/Observation/${id}/_history/1`)).status).toBe(404);
    expect((await b('get', `/fhir/Observation/${id}/_history/2`)).status).toBe(200);
    const history = await b('get', `/fhir/Observation/${id}/_history`);
    expect([history.body.total, history.body.entry.map((e: { response: { etag: string } }) => e.response.etag)]).toEqual([1, ['W/"2"']]);
    const vread = records.filter((r) => r.kind === 'vread').at(-2)!;
    expect(vread.accessBasis[0]).toContain(`Observation/${id}/_history/1: Patient/${pt.P16} by Consent/${consents.P16}/_history/1#provision deny`);
    // Stored per version, computed at write time.
    const periods = await node1.db.query(`SELECT version_id, clinical_period = $2::tstzrange AS v1, clinical_period = $3::tstzrange AS v2 FROM resource_history WHERE resource_type = 'Observation' AND id = $1 ORDER BY version_id`, [
      id,
      '[2019-06-01T08:00:00Z,2019-06-01T08:00:00Z]',
      '[2023-05-01T00:00:00Z,2023-05-02T00:00:00Z)',
    ]);
    expect(periods).toEqual([{ version_id: 1, v1: true, v2: false }, { version_id: 2, v1: false, v2: true }]);
  });

  it('resources created in a transaction Bundle (the bulk path) are judged on their clinical date too', async () => {
    const entry = (['obs-2019', 'obs-2023'] as const).map((kind, n) => ({
      fullUrl: `urn:uuid:00000000-0000-4000-8000-${String(900 + n).padStart(12, '0')}`,
      resource: { ...DATED[kind], subject: { reference: `Patient/${pt.P16}` } },
      request: { method: 'POST', url: 'Observation' },
    }));
    const bundle = await a1('post', '/fhir').set('Content-Type', FHIR_JSON).send({ resourceType: 'Bundle', type: 'transaction', entry });
    expect(bundle.status).toBe(200);
    const [in2019, in2023] = bundle.body.entry.map((e: { response: { location: string } }) => /Observation\/([^/]+)/.exec(e.response.location)![1]);
    const stored = await node1.db.query(
      `SELECT (SELECT upper(clinical_period) = lower(clinical_period) FROM resource WHERE resource_type = 'Observation' AND id = $1) AS current_row,
              (SELECT upper(clinical_period) = lower(clinical_period) FROM resource_history WHERE resource_type = 'Observation' AND id = $1 AND version_id = 1) AS history_row`,
      [in2019],
    );
    expect(stored).toEqual([{ current_row: true, history_row: true }]);
    const b = await as(node2.http, clients.B);
    expect([(await b('get', `/fhir/Observation/${in2019}`)).status, (await b('get', `/fhir/Observation/${in2023}`)).status]).toEqual([404, 200]);
    const search = await b('get', `/fhir/Observation?_id=${in2019},${in2023}&_total=accurate`);
    expect([search.body.total, search.body.entry.map((e: { resource: { id: string } }) => e.resource.id)]).toEqual([1, [in2023]]);
  });

  it('the clinical period of a FHIR date follows its precision; invalid dates and other types have none', async () => {
    const period = async (type: string, body: unknown) =>
      (await node1.db.query(`SELECT to_char(lower(p) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS') AS lo, to_char(upper(p) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS') AS hi, lower_inc(p) AS li, upper_inc(p) AS ui FROM fhir_clinical_period($1, $2::jsonb) AS p`, [type, JSON.stringify(body)]))[0];
    expect(await period('Observation', { effectiveDateTime: '2019' })).toEqual({ lo: '2019-01-01T00:00:00', hi: '2020-01-01T00:00:00', li: true, ui: false });
    expect(await period('Observation', { effectiveDateTime: '2019-02' })).toEqual({ lo: '2019-02-01T00:00:00', hi: '2019-03-01T00:00:00', li: true, ui: false });
    expect(await period('Condition', { onsetDateTime: '2019-02-28', recordedDate: '2020-01-01' })).toEqual({ lo: '2019-02-28T00:00:00', hi: '2019-03-01T00:00:00', li: true, ui: false });
    expect(await period('Condition', { recordedDate: '2020-01-01' })).toEqual({ lo: '2020-01-01T00:00:00', hi: '2020-01-02T00:00:00', li: true, ui: false });
    expect(await period('Encounter', { period: { start: '2019-03-05T23:30:00-05:00' } })).toEqual({ lo: '2019-03-06T04:30:00', hi: null, li: true, ui: false });
    expect(await period('Immunization', { occurrenceDateTime: '2019-02-30' })).toEqual({ lo: null, hi: null, li: null, ui: null });
    expect(await period('Immunization', { occurrenceString: 'as a child' })).toEqual({ lo: null, hi: null, li: null, ui: null });
    expect(await period('Encounter', { period: { start: '2020-01-01', end: '2019-01-01' } })).toEqual({ lo: null, hi: null, li: null, ui: null });
    expect(await period('Patient', { birthDate: '2019-01-01' })).toEqual({ lo: null, hi: null, li: null, ui: null });
  });

  it('a Consent written through one node takes effect on the next request to another', async () => {
    const p = await patient('Nodes');
    const o = await observation(p);
    const b2 = await as(node2.http, clients.B);
    expect((await b2('get', `/fhir/Observation/${o}`)).status).toBe(200);
    const id = await createdId(await a1('post', '/fhir/Consent').set('Content-Type', FHIR_JSON).send(consent(p, { type: 'deny' })));
    expect((await b2('get', `/fhir/Observation/${o}`)).status).toBe(404);
    expect((await b2('get', `/fhir/Observation?subject=Patient/${p}`)).body.entry ?? []).toEqual([]);
    // Withdrawn through node 1 (status inactive): visible again on node 2 at once.
    const current = await a1('get', `/fhir/Consent/${id}`);
    expect((await a1('put', `/fhir/Consent/${id}`).set('Content-Type', FHIR_JSON).send({ ...current.body, status: 'inactive' })).status).toBe(200);
    expect((await b2('get', `/fhir/Observation/${o}`)).status).toBe(200);
  });

  describe('Patient/$everything', () => {
    it('returns the Patient and the compartment the requester may see, paged, with _type and _since, audited once', async () => {
      const p = await patient('Everything');
      const plain = await observation(p);
      const labelled = [await observation(p, [HIV]), await observation(p, [RESTRICTED])];
      const b = await as(node2.http, clients.B);
      const res = await b('get', `/fhir/Patient/${p}/$everything?_total=accurate`);
      expect(res.status).toBe(200);
      const refs = res.body.entry.map((e: { resource: { resourceType: string; id: string } }) => `${e.resource.resourceType}/${e.resource.id}`).sort();
      expect([refs, res.body.total]).toEqual([[`Observation/${plain}`, `Patient/${p}`].sort(), 2]);
      const everything = records.filter((r) => r.kind === 'operation');
      expect(everything).toHaveLength(1);
      expect(everything[0]).toMatchObject({ subtype: 'everything', status: 200, patients: [p] });
      expect(everything[0].entities.map((e) => e.reference).sort()).toEqual(refs);

      // The owner sees the labelled ones too; pages are full, the next link continues $everything.
      const all = await a1('get', `/fhir/Patient/${p}/$everything?_count=3&_total=accurate`);
      expect([all.body.entry.length, all.body.total]).toEqual([3, 4]);
      const next = all.body.link.find((l: { relation: string }) => l.relation === 'next').url as string;
      expect(next).toMatch(new RegExp(`/fhir/Patient/${p}/\\$everything\\?_count=3&_total=accurate&_cursor=`));
      const page2 = await a1('get', next.replace(/^https?:\/\/[^/]+/, ''));
      const owned = [...all.body.entry, ...page2.body.entry].map((e: { resource: { resourceType: string; id: string } }) => `${e.resource.resourceType}/${e.resource.id}`).sort();
      expect(owned).toEqual([...refs, ...labelled.map((id) => `Observation/${id}`)].sort());

      const typed = await b('get', `/fhir/Patient/${p}/$everything?_type=Patient`);
      expect(typed.body.entry.map((e: { resource: { id: string } }) => e.resource.id)).toEqual([p]);
      const since = await b('get', `/fhir/Patient/${p}/$everything?_since=${encodeURIComponent(iso(1))}`);
      expect(since.body.entry ?? []).toEqual([]);
    });

    it('answers 404 for a patient the requester may not see, 400 for bad parameters', async () => {
      const b = await as(node2.http, clients.B);
      const denied = await b('get', `/fhir/Patient/${pt.P1}/$everything`);
      expect([denied.status, denied.body.issue[0].code]).toEqual([404, 'not-found']);
      const badType = await b('get', `/fhir/Patient/${pt.P0}/$everything?_type=Organization`);
      expect([badType.status, badType.body.issue[0].diagnostics]).toEqual([400, `'Organization' in _type is not a type of the Patient compartment`]);
      const unknown = await b('get', `/fhir/Patient/${pt.P0}/$everything?start=2020`);
      expect([unknown.status, unknown.body.issue[0].diagnostics]).toEqual([400, `Unknown parameter 'start' for $everything`]);
      const since = await b('get', `/fhir/Patient/${pt.P0}/$everything?_since=yesterday`);
      expect([since.status, since.body.issue[0].expression]).toEqual([400, ['_since']]);
    });
  });

  describe('writing Consents', () => {
    const provisionCount = async (consentId?: string) =>
      Number((await node1.db.query(`SELECT count(*) AS n FROM consent_provision${consentId ? ' WHERE consent_id = $1' : ''}`, consentId ? [consentId] : []))[0].n);

    it('only the organization that authored the Patient may write its Consent', async () => {
      const before = await provisionCount();
      const b = await as(node1.http, clients.B);
      const refused = await b('post', '/fhir/Consent').set('Content-Type', FHIR_JSON).send(consent(pt.P0, { type: 'permit', actor: [actor(ORG_B)] }));
      expect([refused.status, refused.body.issue[0].code, refused.body.issue[0].diagnostics]).toEqual([
        403,
        'forbidden',
        'A Consent may be written only by the custodian organization of its Patient (Consent.patient)',
      ]);
      const missing = await b('post', '/fhir/Consent').set('Content-Type', FHIR_JSON).send(consent('no-such-patient', { type: 'permit' }));
      expect([missing.status, missing.body.issue[0].diagnostics]).toEqual([403, refused.body.issue[0].diagnostics]);
      // Nor may B change A's Consent (the write rule).
      const current = await a1('get', `/fhir/Consent/${consents.P1}`);
      const change = await b('put', `/fhir/Consent/${consents.P1}`).set('Content-Type', FHIR_JSON).send({ ...current.body, status: 'inactive' });
      expect([change.status, change.body.issue[0].code]).toEqual([403, 'forbidden']);
      expect(await provisionCount()).toBe(before);
      expect((await a1('get', `/fhir/Consent?patient=${pt.P0}`)).body.entry ?? []).toEqual([]);
      expect((await a1('get', `/fhir/Consent/${consents.P1}`)).body.meta.versionId).toBe('1');
    });

    it('materializes individual actors and codes, one row per combination', async () => {
      const rows = async (id: string) =>
        node1.db.query(`SELECT provision_path, permit, actor_org, actor_ref, purpose, code_system, code FROM consent_provision WHERE consent_id = $1 ORDER BY provision_path, actor_ref, code`, [id]);
      expect(await rows(consents.P13)).toEqual([
        { provision_path: 'provision', permit: false, actor_org: null, actor_ref: 'Practitioner/dr-x', purpose: null, code_system: null, code: null },
        { provision_path: 'provision', permit: false, actor_org: null, actor_ref: 'PractitionerRole/dr-x-cardio', purpose: null, code_system: null, code: null },
      ]);
      expect(await rows(consents.P14)).toEqual([
        { provision_path: 'provision', permit: true, actor_org: ORG_C, actor_ref: null, purpose: null, code_system: LOINC, code: '2345-7' },
        { provision_path: 'provision', permit: true, actor_org: ORG_C, actor_ref: null, purpose: null, code_system: LOINC, code: '8480-6' },
      ]);
      expect(await rows(consents.P15)).toEqual([
        { provision_path: 'provision', permit: true, actor_org: null, actor_ref: 'CareTeam/team-1', purpose: null, code_system: null, code: null },
        { provision_path: 'provision.provision[0]', permit: false, actor_org: null, actor_ref: 'CareTeam/team-1', purpose: 'HPAYMT', code_system: null, code: null },
      ]);
    });

    it('refuses Consents outside the profile or with criteria the exchange cannot enforce, storing nothing', async () => {
      const before = await provisionCount();
      const post = (body: Record<string, unknown>) => a1('post', '/fhir/Consent').set('Content-Type', FHIR_JSON).send(body);
      const noCategory = await post({ ...consent(pt.P0, { type: 'deny' }), category: [{ coding: [{ system: 'http://loinc.org', code: '57016-8' }] }] });
      expect([noCategory.status, noCategory.body.issue.map((i: { diagnostics: string }) => i.diagnostics).join(' ')]).toEqual([422, expect.stringContaining('59284-0')]);
      const noType = await post(consent(pt.P0, { type: 'deny', provision: [{ actor: [actor(ORG_C)] }] }));
      expect(noType.status).toBe(422);
      const relatedPerson = await post(consent(pt.P0, { type: 'deny', actor: [actor(ORG_C), individual('RelatedPerson/x')] }));
      expect([relatedPerson.status, relatedPerson.body.issue[0].code, relatedPerson.body.issue[0].expression, relatedPerson.body.issue[0].diagnostics]).toEqual([
        422,
        'business-rule',
        ['Consent.provision.actor[1].reference'],
        'provision.actor[1].reference must reference an Organization, Practitioner, PractitionerRole or CareTeam by id (Type/{id})',
      ]);
      const textOnly = await post(consent(pt.P0, { type: 'deny', code: [{ text: 'blood pressure' }] }));
      expect([textOnly.status, textOnly.body.issue[0].expression, textOnly.body.issue[0].diagnostics]).toEqual([
        422,
        ['Consent.provision.code[0]'],
        'provision.code[0] must have a coding (text alone cannot be matched)',
      ]);
      const noCode = await post(consent(pt.P0, { type: 'deny', provision: [{ type: 'permit', code: [{ coding: [{ system: LOINC }] }] }] }));
      expect([noCode.status, noCode.body.issue[0].expression]).toEqual([422, ['Consent.provision.provision[0].code[0].coding[0].code']]);
      const backwards = await post(consent(pt.P0, { type: 'deny', period: { start: iso(1), end: iso(-1) } }));
      expect([backwards.status, backwards.body.issue[0].diagnostics]).toEqual([422, 'provision.period ends before it starts']);
      expect(await provisionCount()).toBe(before);
      expect((await a1('get', `/fhir/Consent?patient=${pt.P0}`)).body.entry ?? []).toEqual([]);
    });
  });
});
