import { Injectable, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import type { AuditRecord } from '../../src/fhir/pipeline/audit-record';
import { AppModule } from '../../src/app.module';
import { configureApp } from '../../src/app.setup';
import type { Interaction } from '../../src/fhir/pipeline/interaction';
import { ConsentDecision, ConsentStage } from '../../src/fhir/pipeline/pipeline.stages';
import type { Principal } from '../../src/fhir/pipeline/principal';
import { captureAuditRecords } from '../support/audit';
import { registerTestClient } from '../support/auth';
import { FHIR_JSON, hiePatient } from '../support/fixtures';

const SYS = 'urn:leak-sweep';
const RESTRICTED = 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R';
/** Clients the test consent stage hides patient P's compartment and restricted resources from. */
const hiddenFrom = new Set<string>();
let hiddenPatient = '';

/**
 * A consent stage as the consent module will plug one in: a typed fragment over the row at any
 * alias. It hides one patient's compartment, and resources labelled restricted, from client B.
 */
@Injectable()
class HidingConsent extends ConsentStage {
  async decide(principal: Principal, _interaction: Interaction): Promise<ConsentDecision> {
    if (!principal.clientId || !hiddenFrom.has(principal.clientId)) return { fragments: [], basis: 'test: nothing hidden' };
    return {
      basis: 'test: patient hidden',
      fragments: [
        {
          basis: 'consent',
          description: 'test: one patient hidden',
          render: (alias, bind) =>
            `NOT (${alias}.compartments @> ARRAY[${bind.bind(hiddenPatient)}]::text[]) AND NOT (${alias}.security_labels @> ARRAY[${bind.bind(RESTRICTED)}]::text[])`,
        },
      ],
    };
  }
}

/**
 * Leak sweep (access pipeline, second edition): with a consent stage hiding patient P's compartment
 * (and a restricted Organization) from client B, no interaction kind reveals anything of them —
 * no resource, id, count, or 403/404/409/412 difference from a resource that does not exist — and
 * every interaction is audited once, a refused access by id with the patient it targeted.
 */
describe('access pipeline leak sweep', () => {
  let app: INestApplication;
  let http: ReturnType<INestApplication['getHttpServer']>;
  let a: (m: 'get' | 'post' | 'put' | 'patch' | 'delete', path: string) => request.Test;
  let b: (m: 'get' | 'post' | 'put' | 'patch' | 'delete', path: string) => request.Test;
  let bClient = '';
  let records: AuditRecord[] = [];
  const ids: Record<string, string> = {};
  let started = '';

  const create = async (body: Record<string, unknown>): Promise<string> => {
    const res = await a('post', `/fhir/${body.resourceType as string}`).set('Content-Type', FHIR_JSON).send(body);
    if (res.status !== 201) throw new Error(`create ${body.resourceType as string}: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body.id as string;
  };
  const matchIds = (res: request.Response, mode = 'match'): string[] =>
    (res.body.entry ?? []).filter((e: { search?: { mode: string } }) => e.search?.mode === mode).map((e: { resource: { resourceType: string; id: string } }) => `${e.resource.resourceType}/${e.resource.id}`).sort();
  /** The answer without the id that was asked for: a hidden resource and a missing one must read the same. */
  const shape = (res: request.Response, id: string) => ({ status: res.status, body: JSON.stringify(res.body).split(id).join('<id>') });

  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).overrideProvider(ConsentStage).useClass(HidingConsent).compile();
    app = moduleRef.createNestApplication({ bodyParser: false, bufferLogs: true });
    configureApp(app);
    await app.init();
    http = app.getHttpServer();
    const t = { app, http } as never;
    const ca = await registerTestClient(t, { role: 'hospital', organization: 'org-a' });
    const cb = await registerTestClient(t, { role: 'hospital', organization: 'org-b' });
    bClient = cb.clientId;
    hiddenFrom.add(bClient);
    const ta = await ca.token();
    const tb = await cb.token();
    a = (m, path) => request(http)[m](path).set('Authorization', `Bearer ${ta}`);
    b = (m, path) => request(http)[m](path).set('Authorization', `Bearer ${tb}`);
    started = new Date(Date.now() - 1000).toISOString();

    ids.Y = await create({ resourceType: 'Organization', name: 'Visible Clinic Leaksweep' });
    ids.X = await create({ resourceType: 'Organization', name: 'Restricted Clinic Leaksweep', meta: { security: [{ system: RESTRICTED.split('|')[0], code: 'R' }] } });
    ids.P = await create(
      hiePatient({
        identifier: [1, 2, 3, 4].map((n) => ({ system: SYS, value: `p-hidden-${n}` })),
        name: [{ family: 'Leaksweep', given: ['Hidden'] }],
        managingOrganization: { reference: `Organization/${ids.Y}` },
      }),
    );
    hiddenPatient = ids.P;
    ids.Q = await create(
      hiePatient({
        identifier: [{ system: SYS, value: 'q-visible' }],
        name: [{ family: 'Leaksweep', given: ['Visible'] }],
        managingOrganization: { reference: `Organization/${ids.Y}` },
        generalPractitioner: [{ reference: `Organization/${ids.X}` }],
      }),
    );
    const observation = (subject: string, idValue: string) => ({
      resourceType: 'Observation',
      status: 'final',
      identifier: [{ system: SYS, value: idValue }],
      code: { text: 'leak sweep' },
      subject: { reference: `Patient/${subject}` },
    });
    ids.O = await create(observation(ids.P, 'o-hidden'));
    ids.OQ = await create(observation(ids.Q, 'o-visible'));
    // A second version of P, so vread and history have versions to hide.
    const p = await a('get', `/fhir/Patient/${ids.P}`);
    expect((await a('put', `/fhir/Patient/${ids.P}`).set('Content-Type', FHIR_JSON).send({ ...p.body, gender: 'male' })).status).toBe(200);

    records = captureAuditRecords(app);
  }, 60_000);
  afterAll(() => app.close());
  beforeEach(() => {
    records.length = 0;
  });

  /** Exactly one record per request of B (Bundles: one for the Bundle plus one per entry). */
  const bRecords = () => records.filter((r) => r.principal.clientId === bClient);

  it('the owner sees everything (the sweep below can fail)', async () => {
    expect((await a('get', `/fhir/Patient/${ids.P}`)).status).toBe(200);
    expect(matchIds(await a('get', '/fhir/Patient?family=Leaksweep'))).toEqual([`Patient/${ids.P}`, `Patient/${ids.Q}`].sort());
    expect(records.map((r) => [r.kind, r.patients])).toEqual([
      ['read', [ids.P]],
      ['search-type', [ids.P, ids.Q].sort()],
    ]);
  });

  it('read and vread: 404 exactly as for a resource that does not exist, audited with the patient asked for', async () => {
    for (const [path, missing] of [
      [`/fhir/Patient/${ids.P}`, '/fhir/Patient/no-such-leak'],
      [`/fhir/Observation/${ids.O}`, '/fhir/Observation/no-such-leak'],
      [`/fhir/Patient/${ids.P}/_history/1`, '/fhir/Patient/no-such-leak/_history/1'],
      [`/fhir/Patient/${ids.P}/_history`, '/fhir/Patient/no-such-leak/_history'],
    ]) {
      const hidden = await b('get', path);
      const absent = await b('get', missing);
      expect(hidden.status).toBe(404);
      expect(shape(hidden, path.split('/')[3])).toEqual(shape(absent, 'no-such-leak'));
    }
    const refused = bRecords();
    expect(refused.map((r) => [r.kind, r.outcome, r.status])).toEqual([
      ['read', 'failure', 404],
      ['read', 'failure', 404],
      ['read', 'failure', 404],
      ['read', 'failure', 404],
      ['vread', 'failure', 404],
      ['vread', 'failure', 404],
      ['history-instance', 'failure', 404],
      ['history-instance', 'failure', 404],
    ]);
    // Auditors see whose data B asked for; B was told nothing.
    expect(refused.filter((_, i) => i % 2 === 0).map((r) => r.patients)).toEqual([[ids.P], [ids.P], [ids.P], [ids.P]]);
    expect(refused.filter((_, i) => i % 2 === 1).map((r) => r.patients)).toEqual([[], [], [], []]);
  });

  it('history at type and system level leaves out every version of the hidden resources', async () => {
    const type = await b('get', `/fhir/Patient/_history?_since=${encodeURIComponent(started)}`);
    const system = await b('get', `/fhir/_history?_since=${encodeURIComponent(started)}&_count=1000`);
    const refs = (res: request.Response) => [...new Set((res.body.entry ?? []).map((e: { fullUrl: string }) => e.fullUrl.replace(/^.*\/fhir\//, '')))];
    expect(refs(type)).toEqual([`Patient/${ids.Q}`]);
    expect(refs(system)).toEqual(expect.arrayContaining([`Patient/${ids.Q}`, `Observation/${ids.OQ}`, `Organization/${ids.Y}`]));
    for (const hidden of [`Patient/${ids.P}`, `Observation/${ids.O}`, `Organization/${ids.X}`]) expect(refs(system)).not.toContain(hidden);
    expect(bRecords().map((r) => r.patients)).toEqual([[ids.Q], [ids.Q]]);
  });

  it('search, counts, _include, _revinclude, :iterate, chains, _has, compartment and system search reveal nothing', async () => {
    const cases: [string, string[], string[]?][] = [
      ['/fhir/Patient?family=Leaksweep', [`Patient/${ids.Q}`]],
      [`/fhir/Patient?_id=${ids.P}`, []],
      [`/fhir/Patient?identifier=${SYS}|p-hidden-1`, []],
      [`/fhir/Observation?subject=Patient/${ids.P}`, []],
      [`/fhir/Observation?patient=${ids.P}`, []],
      [`/fhir/Organization?_id=${ids.Y}&_revinclude=Patient:organization`, [`Organization/${ids.Y}`], [`Patient/${ids.Q}`]],
      [`/fhir/Patient?_id=${ids.Q}&_include=Patient:general-practitioner`, [`Patient/${ids.Q}`], []],
      [`/fhir/Observation?_id=${ids.OQ}&_include=Observation:subject&_include:iterate=Patient:general-practitioner`, [`Observation/${ids.OQ}`], [`Patient/${ids.Q}`]],
      ['/fhir/Patient?general-practitioner:Organization.name=Restricted', []],
      ['/fhir/Observation?subject:Patient.given=Hidden', []],
      [`/fhir/Organization?_has:Patient:organization:identifier=${SYS}|p-hidden-1`, []],
      [`/fhir/Organization?_id=${ids.X}`, []],
      [`/fhir/Patient/${ids.P}/Observation`, []],
      [`/fhir?_type=Patient,Observation,Organization&_lastUpdated=ge${encodeURIComponent(started)}`, [`Observation/${ids.OQ}`, `Organization/${ids.Y}`, `Patient/${ids.Q}`]],
    ];
    for (const [path, matches, included] of cases) {
      const res = await b('get', path);
      expect({ path, status: res.status, matches: matchIds(res) }).toEqual({ path, status: 200, matches: [...matches].sort() });
      if (included) expect({ path, included: matchIds(res, 'include') }).toEqual({ path, included });
    }
    const total = await b('get', '/fhir/Patient?family=Leaksweep&_total=accurate');
    expect(total.body.total).toBe(1);
    const count = await b('get', '/fhir/Patient?family=Leaksweep&_summary=count');
    expect(count.body.total).toBe(1);
    // One record per search, naming only what B was shown (the compartment searched is named too).
    const searched = bRecords();
    expect(searched).toHaveLength(cases.length + 2);
    expect(searched.every((r) => r.outcome === 'success')).toBe(true);
    expect(searched.filter((r) => r.kind !== 'search-compartment').flatMap((r) => r.patients)).not.toContain(ids.P);
  });

  it('conditional create, update and delete match only what B may see', async () => {
    // If-None-Exist on a hidden match creates, exactly as when nothing matches (B learns nothing).
    const body = (v: string) => ({ resourceType: 'Observation', status: 'final', code: { text: 'b' }, identifier: [{ system: SYS, value: v }] });
    const hiddenMatch = await b('post', '/fhir/Observation').set('Content-Type', FHIR_JSON).set('If-None-Exist', `identifier=${SYS}|o-hidden`).send(body('o-hidden'));
    const noMatch = await b('post', '/fhir/Observation').set('Content-Type', FHIR_JSON).set('If-None-Exist', `identifier=${SYS}|nothing-1`).send(body('nothing-1'));
    expect([hiddenMatch.status, noMatch.status]).toEqual([201, 201]);
    expect(hiddenMatch.body.id).not.toBe(ids.O);

    const update = await b('put', `/fhir/Patient?identifier=${encodeURIComponent(`${SYS}|p-hidden-2`)}`).set('Content-Type', FHIR_JSON).send(hiePatient());
    expect(update.status).toBe(201);
    expect(update.body.id).not.toBe(ids.P);

    const del = await b('delete', `/fhir/Patient?identifier=${encodeURIComponent(`${SYS}|p-hidden-3`)}`);
    const delNone = await b('delete', `/fhir/Patient?identifier=${encodeURIComponent(`${SYS}|nothing-2`)}`);
    expect([del.status, del.body.issue[0].diagnostics]).toEqual([200, 'Deleted 0 Patient resource(s)']);
    expect(shape(del, 'p-hidden-3')).toEqual(shape(delNone, 'nothing-2'));
    expect((await a('get', `/fhir/Patient/${ids.P}`)).body.meta.versionId).toBe('2');
  });

  it('a transaction’s conditional references and ifNoneExist see only what B may see', async () => {
    const tx = (reference: string, ifNoneExist: string) => ({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { fullUrl: 'urn:uuid:7a0e2b2c-0000-4000-8000-000000000001', resource: hiePatient({ identifier: [{ system: SYS, value: ifNoneExist }] }), request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=${SYS}|${ifNoneExist}` } },
        { resource: { resourceType: 'Observation', status: 'final', code: { text: 't' }, subject: { reference } }, request: { method: 'POST', url: 'Observation' } },
      ],
    });
    const hidden = await b('post', '/fhir').set('Content-Type', FHIR_JSON).send(tx(`Patient?identifier=${SYS}|p-hidden-4`, 'x-1'));
    const absent = await b('post', '/fhir').set('Content-Type', FHIR_JSON).send(tx(`Patient?identifier=${SYS}|nothing-3`, 'x-1'));
    expect(hidden.status).toBe(412);
    expect(shape(hidden, 'p-hidden-4')).toEqual(shape(absent, 'nothing-3'));
    // ifNoneExist on a hidden match creates a new Patient; the reference to it resolves to B's own.
    const created = await b('post', '/fhir').set('Content-Type', FHIR_JSON).send(tx('urn:uuid:7a0e2b2c-0000-4000-8000-000000000001', 'p-hidden-4'));
    expect(created.status).toBe(200);
    expect(created.body.entry[0].response.status).toBe('201 Created');
    expect(created.body.entry[0].resource?.id ?? created.body.entry[0].response.location).not.toContain(ids.P);
  });

  it('a conditional reference outside a transaction resolves only to what B may see: a hidden match reads as none', async () => {
    const observation = (value: string, reference: string) => ({ resourceType: 'Observation', status: 'final', code: { text: 'ref' }, identifier: [{ system: SYS, value }], subject: { reference } });
    const hidden = await b('post', '/fhir/Observation').set('Content-Type', FHIR_JSON).send(observation('ref-hidden', `Patient?identifier=${SYS}|p-hidden-1`));
    const absent = await b('post', '/fhir/Observation').set('Content-Type', FHIR_JSON).send(observation('ref-hidden', `Patient?identifier=${SYS}|nothing-4`));
    expect(hidden.status).toBe(412);
    expect(shape(hidden, 'p-hidden-1')).toEqual(shape(absent, 'nothing-4'));
    const batch = await b('post', '/fhir')
      .set('Content-Type', FHIR_JSON)
      .send({ resourceType: 'Bundle', type: 'batch', entry: [{ resource: observation('ref-hidden', `Patient?identifier=${SYS}|p-hidden-1`), request: { method: 'POST', url: 'Observation' } }] });
    expect(batch.body.entry[0].response.status).toBe('412');
    const visible = await b('post', '/fhir/Observation').set('Content-Type', FHIR_JSON).send(observation('ref-visible', `Patient?identifier=${SYS}|q-visible`));
    expect([visible.status, visible.body.subject.reference]).toEqual([201, `Patient/${ids.Q}`]);
    // Nothing of the refused writes was stored.
    const found = await a('get', `/fhir/Observation?identifier=${encodeURIComponent(`${SYS}|ref-hidden`)}`);
    expect(found.body.entry ?? []).toEqual([]);
  });

  it('PATCH, PUT and DELETE by id: one 403 for hidden, missing and other organizations’ resources; nothing changes', async () => {
    const patch = [{ op: 'replace', path: '/gender', value: 'other' }];
    const patchHidden = await b('patch', `/fhir/Patient/${ids.P}`).set('Content-Type', 'application/json-patch+json').send(patch);
    const patchMissing = await b('patch', '/fhir/Patient/no-such-leak').set('Content-Type', 'application/json-patch+json').send(patch);
    const patchVisible = await b('patch', `/fhir/Patient/${ids.Q}`).set('Content-Type', 'application/json-patch+json').send(patch);
    expect(patchHidden.status).toBe(403);
    expect(shape(patchHidden, ids.P)).toEqual(shape(patchMissing, 'no-such-leak'));
    expect(shape(patchHidden, ids.P)).toEqual(shape(patchVisible, ids.Q));

    const putHidden = await b('put', `/fhir/Patient/${ids.P}`).set('Content-Type', FHIR_JSON).send(hiePatient({ id: ids.P }));
    const putVisible = await b('put', `/fhir/Patient/${ids.Q}`).set('Content-Type', FHIR_JSON).send(hiePatient({ id: ids.Q }));
    expect(putHidden.status).toBe(403);
    expect(shape(putHidden, ids.P)).toEqual(shape(putVisible, ids.Q));
    // If-Match on a hidden resource: still the same 403, never a 412 that would confirm it exists.
    const putStale = await b('put', `/fhir/Patient/${ids.P}`).set('Content-Type', FHIR_JSON).set('If-Match', 'W/"1"').send(hiePatient({ id: ids.P }));
    expect(shape(putStale, ids.P)).toEqual(shape(putHidden, ids.P));

    const delHidden = await b('delete', `/fhir/Observation/${ids.O}`);
    const delMissing = await b('delete', '/fhir/Observation/no-such-leak');
    const delVisible = await b('delete', `/fhir/Observation/${ids.OQ}`);
    expect(delHidden.status).toBe(403);
    expect(shape(delHidden, ids.O)).toEqual(shape(delMissing, 'no-such-leak'));
    expect(shape(delHidden, ids.O)).toEqual(shape(delVisible, ids.OQ));
    expect(delHidden.body.issue[0]).toMatchObject({ code: 'forbidden', diagnostics: `Observation/${ids.O} is not a resource this client may change` });

    for (const [type, id, version] of [['Patient', ids.P, '2'], ['Patient', ids.Q, '1'], ['Observation', ids.O, '1'], ['Observation', ids.OQ, '1']]) {
      const now = await a('get', `/fhir/${type}/${id}`);
      expect([now.status, now.body.meta.versionId]).toEqual([200, version]);
    }
    expect(bRecords().map((r) => [r.kind, r.status, r.patients])).toEqual([
      ['patch', 403, [ids.P]],
      ['patch', 403, []],
      ['patch', 403, [ids.Q]],
      ['update', 403, [ids.P]],
      ['update', 403, [ids.Q]],
      ['update', 403, [ids.P]],
      ['delete', 403, [ids.P]],
      ['delete', 403, []],
      ['delete', 403, [ids.Q]],
    ]);
  });

  it('operations on a hidden resource answer as on a missing one', async () => {
    const hidden = await b('post', `/fhir/Patient/${ids.P}/$no-such-operation`);
    const missing = await b('post', '/fhir/Patient/no-such-leak/$no-such-operation');
    expect(hidden.status).toBe(404);
    expect(hidden.body.issue[0].code).toBe('not-supported');
    expect(shape(hidden, ids.P)).toEqual(shape(missing, 'no-such-leak'));
  });
});
