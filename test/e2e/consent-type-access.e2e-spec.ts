import { Injectable, Module, OnModuleInit } from '@nestjs/common';
import request from 'supertest';
import type { AuditRecord } from '../../src/fhir/pipeline/audit-record';
import type { SqlBinder } from '../../src/fhir/pipeline/access-predicate';
import { JudgedRow, JudgingRequester, PatientAccessContributor, ReadAccessRegistry, TypeAccessRule } from '../../src/fhir/pipeline/read-access';
import { captureAuditRecords } from '../support/audit';
import { registerTestClient } from '../support/auth';
import { FHIR_JSON, hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

// The fixture Subscription's endpoint (rest-hook endpoints must be allow-listed, docs/referrals.md).
process.env.SUBSCRIPTION_ENDPOINT_ALLOW = 'https://hospital-a.example.org/';

const RUN = Date.now().toString(36);
const ORG_A = `ta-a-${RUN}`; // custodian of everything created here
const ORG_B = `ta-b-${RUN}`; // another organization; the referrals' receiver
const ORG_C = `ta-c-${RUN}`; // an organization no referral names
const ACT = 'http://terminology.hl7.org/CodeSystem/v3-ActCode';

/**
 * A test-only read-access contributor, as the referrals module will register one: organization B may
 * see the data of the patients referred to it (held here as a list; referrals will read their Tasks).
 */
@Injectable()
class TestReferralContributor implements PatientAccessContributor, OnModuleInit {
  readonly name = 'test-referral';
  readonly basis = 'referral';
  readonly referred: string[] = [];
  constructor(private readonly registry: ReadAccessRegistry) {}

  onModuleInit(): void {
    this.registry.registerContributor(this);
  }

  render(patient: string, _row: JudgedRow, requester: JudgingRequester, bind: SqlBinder): string {
    return `(${requester.organization} = ${bind.bind(ORG_B)} AND ${patient} = ANY(${bind.bind([...this.referred])}::text[]))`;
  }
}

/** A test-only type rule: organization C (say, an accreditation body) reads every VerificationResult. */
@Injectable()
class TestVerificationReaderRule implements TypeAccessRule, OnModuleInit {
  readonly name = 'test-verification-reader';
  readonly resourceTypes = ['VerificationResult'];
  constructor(private readonly registry: ReadAccessRegistry) {}

  onModuleInit(): void {
    this.registry.registerTypeRule(this);
  }

  render(_row: JudgedRow, requester: JudgingRequester, bind: SqlBinder): string {
    return `${requester.organization} = ${bind.bind(ORG_C)}`;
  }
}

@Module({ providers: [TestReferralContributor, TestVerificationReaderRule] })
class TestReferralModule {}

/** A type rule on a shared type would never apply: the start is refused. */
@Injectable()
class MisplacedRule implements TypeAccessRule, OnModuleInit {
  readonly name = 'test-misplaced';
  readonly resourceTypes = ['Organization'];
  constructor(private readonly registry: ReadAccessRegistry) {}

  onModuleInit(): void {
    this.registry.registerTypeRule(this);
  }

  render(): string {
    return 'TRUE';
  }
}

@Module({ providers: [MisplacedRule] })
class MisplacedRuleModule {}

type Send = (m: 'get' | 'post' | 'put', path: string) => request.Test;

describe('access to types outside the Patient compartment, and read-access contributors', () => {
  let t: TestApp;
  let records: AuditRecord[];
  let a: Send;
  let b: Send;
  let bPayment: Send;
  let cPayment: Send;
  const id: Record<string, string> = {};

  const client = async (organization: string, purpose = 'TREAT', app?: TestApp): Promise<Send> => {
    const on = app ?? t;
    const registered = await registerTestClient(on, { role: 'hospital', organization, scopes: ['system/*.cruds'], purposes: ['TREAT', 'HPAYMT', 'ETREAT'] });
    const token = await registered.token('system/*.cruds', purpose);
    return (m, path) => {
      const r = request(on.http)[m](path).set('Authorization', `Bearer ${token}`).set('Content-Type', FHIR_JSON);
      return purpose === 'ETREAT' ? r.set('X-Break-Glass-Reason', 'unconscious patient in the emergency room') : r;
    };
  };
  const create = async (body: Record<string, unknown>): Promise<string> => {
    const res = await a('post', `/fhir/${body.resourceType as string}`).send(body);
    if (res.status !== 201) throw new Error(`create ${body.resourceType as string}: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body.id as string;
  };
  const ids = (res: request.Response): string[] => ((res.body.entry ?? []) as { resource: { resourceType: string; id: string } }[]).map((e) => `${e.resource.resourceType}/${e.resource.id}`).sort();
  const readRecord = (reference: string): AuditRecord | undefined => records.filter((r) => r.kind === 'read' && r.entities.some((e) => e.reference === reference)).at(-1);

  beforeAll(async () => {
    t = await createTestApp([TestReferralModule]);
    records = captureAuditRecords(t.app);
    [a, b, bPayment, cPayment] = [await client(ORG_A), await client(ORG_B), await client(ORG_B, 'HPAYMT'), await client(ORG_C, 'HPAYMT')];
    id.Bundle = await create({ resourceType: 'Bundle', type: 'collection', identifier: { system: 'urn:test:case-report', value: RUN }, entry: [{ fullUrl: 'urn:uuid:1', resource: { resourceType: 'Basic', code: { text: 'x' } } }] });
    id.Binary = await create({ resourceType: 'Binary', contentType: 'text/plain', data: Buffer.from('case report').toString('base64') });
    id.Subscription = await create({
      resourceType: 'Subscription',
      status: 'requested',
      reason: 'new results',
      criteria: 'Observation?category=laboratory',
      channel: { type: 'rest-hook', endpoint: 'https://hospital-a.example.org/notify', payload: 'application/fhir+json' },
    });
    id.VerificationResult = await create({ resourceType: 'VerificationResult', status: 'validated', target: [{ reference: `Organization/${ORG_A}` }] });
    id.Organization = ORG_A;
    expect((await a('put', `/fhir/Organization/${ORG_A}`).send({ resourceType: 'Organization', id: ORG_A, name: 'Hospital A' })).status).toBe(201);
    id.Practitioner = await create({ resourceType: 'Practitioner', name: [{ family: 'Shared' }] });
    // A Provenance in no patient's compartment (visible to B) pointing at A's custodian-only resources.
    id.Provenance = await create({
      resourceType: 'Provenance',
      recorded: '2026-01-01T00:00:00Z',
      target: [{ reference: `Bundle/${id.Bundle}` }, { reference: `Binary/${id.Binary}` }, { reference: `Subscription/${id.Subscription}` }, { reference: `Practitioner/${id.Practitioner}` }],
      agent: [{ who: { reference: `Organization/${ORG_A}` } }],
    });
  }, 120_000);

  // A second node on the same database (opt-in region), closed last as in consent.e2e-spec.ts:
  // closing it mid-file made the first node answer 401 to its clients' tokens (not investigated).
  let optIn: TestApp | undefined;

  afterAll(async () => {
    await optIn?.close();
    await t?.close();
  });

  describe('types outside the Patient compartment', () => {
    const restricted = ['Bundle', 'Binary', 'Subscription', 'VerificationResult'];

    it.each(restricted)('%s: the custodian reads it; another organization gets 404 for read, vread and history', async (type) => {
      expect((await a('get', `/fhir/${type}/${id[type]}`)).status).toBe(200);
      for (const path of [`/fhir/${type}/${id[type]}`, `/fhir/${type}/${id[type]}/_history/1`, `/fhir/${type}/${id[type]}/_history`]) {
        const res = await b('get', path);
        expect({ path, status: res.status, code: res.body.issue?.[0]?.code }).toEqual({ path, status: 404, code: 'not-found' });
      }
      const denied = readRecord(`${type}/${id[type]}`);
      // Bundle: the public-health module's rule for case reports' reporting organization (docs/public-health.md).
      const rule = { VerificationResult: 'custodian only, or type rule test-verification-reader', Bundle: 'custodian only, or type rule case-report-reporting-organization' }[type] ?? 'custodian only';
      expect(denied?.accessBasis.at(-1)?.endsWith(`${type}/${id[type]}: no patient (${rule})`)).toBe(true);
    });

    it.each(restricted)('%s: another organization finds none by search (page, _total) or type history; the custodian finds it', async (type) => {
      const mine = await a('get', `/fhir/${type}?_id=${id[type]}&_total=accurate`);
      expect([mine.status, mine.body.total, ids(mine)]).toEqual([200, 1, [`${type}/${id[type]}`]]);
      const theirs = await b('get', `/fhir/${type}?_id=${id[type]}&_total=accurate`);
      expect([theirs.status, theirs.body.total, ids(theirs)]).toEqual([200, 0, []]);
      const history = await b('get', `/fhir/${type}/_history?_count=1000`);
      expect(history.status).toBe(200);
      expect(ids(history)).not.toContain(`${type}/${id[type]}`);
    });

    it('_include from a visible Provenance returns only the shared target to another organization', async () => {
      const path = `/fhir/Provenance?_id=${id.Provenance}&_include=Provenance:target`;
      expect(ids(await a('get', path))).toEqual(
        [`Binary/${id.Binary}`, `Bundle/${id.Bundle}`, `Practitioner/${id.Practitioner}`, `Provenance/${id.Provenance}`, `Subscription/${id.Subscription}`].sort(),
      );
      expect(ids(await b('get', path))).toEqual([`Practitioner/${id.Practitioner}`, `Provenance/${id.Provenance}`].sort());
    });

    it('_revinclude, chains and _has do not reach another organization\'s custodian-only rows', async () => {
      const rev = `/fhir/Organization?_id=${ORG_A}&_revinclude=VerificationResult:target`;
      expect(ids(await a('get', rev))).toEqual([`Organization/${ORG_A}`, `VerificationResult/${id.VerificationResult}`]);
      expect(ids(await b('get', rev))).toEqual([`Organization/${ORG_A}`]);
      const chain = `/fhir/Provenance?target:Bundle._id=${id.Bundle}`;
      expect(ids(await a('get', chain))).toEqual([`Provenance/${id.Provenance}`]);
      expect(ids(await b('get', chain))).toEqual([]);
      const has = `/fhir/Binary?_has:Provenance:target:_id=${id.Provenance}`;
      expect(ids(await a('get', has))).toEqual([`Binary/${id.Binary}`]);
      expect(ids(await b('get', has))).toEqual([]);
    });

    it('another organization cannot update a custodian-only row it cannot see (403), and the row is unchanged', async () => {
      const res = await b('put', `/fhir/Subscription/${id.Subscription}`).send({
        resourceType: 'Subscription',
        id: id.Subscription,
        status: 'off',
        reason: 'taken over',
        criteria: 'Observation?category=laboratory',
        channel: { type: 'rest-hook', endpoint: 'https://hospital-b.example.org/steal' },
      });
      expect([res.status, res.body.issue?.[0]?.code]).toEqual([403, 'forbidden']);
      const stored = await a('get', `/fhir/Subscription/${id.Subscription}`);
      expect([stored.body.meta.versionId, stored.body.channel.endpoint]).toEqual(['1', 'https://hospital-a.example.org/notify']);
    });

    it('break-the-glass does not open another organization\'s custodian-only rows', async () => {
      const emergency = await client(ORG_B, 'ETREAT');
      for (const type of restricted) expect({ type, status: (await emergency('get', `/fhir/${type}/${id[type]}`)).status }).toEqual({ type, status: 404 });
      expect((await emergency('get', `/fhir/Practitioner/${id.Practitioner}`)).status).toBe(200);
    });

    it('a module\'s type rule widens a custodian-only type for the organization it names, audited with the rule', async () => {
      const res = await cPayment('get', `/fhir/VerificationResult/${id.VerificationResult}`);
      expect([res.status, res.body.id]).toEqual([200, id.VerificationResult]);
      expect(readRecord(`VerificationResult/${id.VerificationResult}`)?.accessBasis.at(-1)).toMatch(
        new RegExp(`VerificationResult/${id.VerificationResult}: no patient \\(custodian only, or type rule test-verification-reader\\)$`),
      );
      expect(ids(await cPayment('get', `/fhir/VerificationResult?_id=${id.VerificationResult}`))).toEqual([`VerificationResult/${id.VerificationResult}`]);
      expect(ids(await cPayment('get', `/fhir/VerificationResult/${id.VerificationResult}/_history`))).toEqual([`VerificationResult/${id.VerificationResult}`]);
      // The rule names VerificationResult only: C still cannot see A's Bundle.
      expect((await cPayment('get', `/fhir/Bundle/${id.Bundle}`)).status).toBe(404);
    });

    it('a type rule registered for a shared type stops the start', async () => {
      await expect(createTestApp([MisplacedRuleModule])).rejects.toThrow(
        'Read-access type rules for types that are not custodian-only: test-misplaced: Organization is shared',
      );
    });

    it('a conditional create by another organization does not match (nor disclose) the custodian-only row', async () => {
      const body = { resourceType: 'Bundle', type: 'collection', identifier: { system: 'urn:test:case-report', value: RUN } };
      const res = await b('post', '/fhir/Bundle').set('If-None-Exist', `identifier=urn:test:case-report|${RUN}`).send(body);
      expect(res.status).toBe(201);
      expect(res.body.id).not.toBe(id.Bundle);
      const mine = await a('get', `/fhir/Bundle?identifier=urn:test:case-report|${RUN}`);
      expect(ids(mine)).toEqual([`Bundle/${id.Bundle}`]);
    });

    it('Organization and Practitioner (shared) stay readable and searchable by every organization', async () => {
      for (const send of [b, cPayment]) {
        expect((await send('get', `/fhir/Organization/${ORG_A}`)).status).toBe(200);
        expect((await send('get', `/fhir/Practitioner/${id.Practitioner}`)).status).toBe(200);
        expect(ids(await send('get', `/fhir/Practitioner?_id=${id.Practitioner}`))).toEqual([`Practitioner/${id.Practitioner}`]);
      }
      expect(readRecord(`Practitioner/${id.Practitioner}`)?.accessBasis.some((l) => l.endsWith(`Practitioner/${id.Practitioner}: no patient (shared type)`))).toBe(true);
    });
  });

  describe('read-access contributors', () => {
    const pt: Record<string, string> = {};
    const obs: Record<string, string> = {};
    let hivObs: string;
    let referral: TestReferralContributor;

    beforeAll(async () => {
      referral = t.app.get(TestReferralContributor);
      for (const name of ['referred', 'notReferred', 'denied']) {
        pt[name] = await create(hiePatient({ name: [{ family: `Referral${name}${RUN}` }] }));
        obs[name] = await create({ resourceType: 'Observation', status: 'final', code: { text: 'referral test' }, subject: { reference: `Patient/${pt[name]}` } });
      }
      hivObs = await create({ resourceType: 'Observation', status: 'final', meta: { security: [{ system: ACT, code: 'HIV' }] }, code: { text: 'x' }, subject: { reference: `Patient/${pt.referred}` } });
      referral.referred.push(pt.referred, pt.denied);
      // The "denied" patient objects to all sharing: the denial must beat the referral.
      await create({
        resourceType: 'Consent',
        status: 'active',
        scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
        category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
        patient: { reference: `Patient/${pt.denied}` },
        policyRule: { coding: [{ system: ACT, code: 'OPTOUT' }] },
        provision: { type: 'deny' },
      });
    }, 60_000);

    it('opens a referred patient\'s data that the base policy hides for a non-shared purpose; audited with the basis', async () => {
      const res = await bPayment('get', `/fhir/Observation/${obs.referred}`);
      expect([res.status, res.body.id]).toEqual([200, obs.referred]);
      const basis = readRecord(`Observation/${obs.referred}`)?.accessBasis ?? [];
      // The referrals module's own contributor (registered in every app beside the test's) serves TREAT only: not listed for HPAYMT.
      expect(basis).toContain(`consent: policy opt-out (HPAYMT only where a Consent permits), contributors referral (test-referral); Observation/${obs.referred}: Patient/${pt.referred} by referral (test-referral)`);
      const search = await bPayment('get', `/fhir/Observation?subject=Patient/${pt.referred},Patient/${pt.notReferred}&_total=accurate`);
      expect([search.body.total, ids(search)]).toEqual([1, [`Observation/${obs.referred}`]]);
      expect(ids(await bPayment('get', `/fhir/Patient?_id=${pt.referred},${pt.notReferred}`))).toEqual([`Patient/${pt.referred}`]);
    });

    it('opens the referred patient\'s versions and includes too (vread, history, _include, _revinclude)', async () => {
      expect((await bPayment('get', `/fhir/Observation/${obs.referred}/_history/1`)).status).toBe(200);
      expect(ids(await bPayment('get', `/fhir/Observation/${obs.referred}/_history`))).toEqual([`Observation/${obs.referred}`]);
      expect(ids(await bPayment('get', `/fhir/Observation?_id=${obs.referred}&_include=Observation:subject`))).toEqual([`Observation/${obs.referred}`, `Patient/${pt.referred}`]);
      expect(ids(await bPayment('get', `/fhir/Patient?_id=${pt.referred},${pt.notReferred}&_revinclude=Observation:subject`))).toEqual([`Observation/${obs.referred}`, `Patient/${pt.referred}`]);
    });

    it('opens data an opt-in region hides, for a shared purpose too; an unreferred patient stays hidden', async () => {
      process.env.CONSENT_BASE_POLICY = 'opt-in';
      try {
        optIn = await createTestApp([TestReferralModule]);
      } finally {
        delete process.env.CONSENT_BASE_POLICY;
      }
      optIn.app.get(TestReferralContributor).referred.push(pt.referred);
      const bOptIn = await client(ORG_B, 'TREAT', optIn);
      expect((await bOptIn('get', `/fhir/Observation/${obs.referred}`)).status).toBe(200);
      expect((await bOptIn('get', `/fhir/Observation/${obs.notReferred}`)).status).toBe(404);
      expect(ids(await bOptIn('get', `/fhir/Observation?subject=Patient/${pt.referred},Patient/${pt.notReferred}`))).toEqual([`Observation/${obs.referred}`]);
    });

    it('does not open an unreferred patient, nor the data of a referred one to another organization', async () => {
      expect((await bPayment('get', `/fhir/Observation/${obs.notReferred}`)).status).toBe(404);
      expect(readRecord(`Observation/${obs.notReferred}`)?.accessBasis.at(-1)).toMatch(new RegExp(`Observation/${obs.notReferred}: Patient/${pt.notReferred} by base policy$`));
      expect((await cPayment('get', `/fhir/Observation/${obs.referred}`)).status).toBe(404);
    });

    it('a patient deny Consent still wins over the contributor', async () => {
      const res = await bPayment('get', `/fhir/Observation/${obs.denied}`);
      expect([res.status, res.body.issue?.[0]?.code]).toEqual([404, 'not-found']);
      expect(readRecord(`Observation/${obs.denied}`)?.accessBasis.at(-1)).toMatch(new RegExp(`Patient/${pt.denied} by Consent/[^ ]+ deny$`));
      expect(ids(await bPayment('get', `/fhir/Observation?subject=Patient/${pt.denied}`))).toEqual([]);
    });

    it('a sensitive label the patient has not permitted still wins over the contributor', async () => {
      expect((await bPayment('get', `/fhir/Observation/${hivObs}`)).status).toBe(404);
      expect(ids(await bPayment('get', `/fhir/Observation?subject=Patient/${pt.referred}`))).toEqual([`Observation/${obs.referred}`]);
      expect((await a('get', `/fhir/Observation/${hivObs}`)).status).toBe(200);
    });

    it('the basis of a shared purpose names no contributor (the base policy decided)', async () => {
      expect((await b('get', `/fhir/Observation/${obs.referred}`)).status).toBe(200);
      expect(readRecord(`Observation/${obs.referred}`)?.accessBasis.at(-1)).toBe(
        `consent: policy opt-out (TREAT shared unless denied); Observation/${obs.referred}: Patient/${pt.referred} by base policy`,
      );
    });
  });
});
