import request from 'supertest';
import type { AuditRecord } from '../../src/fhir/pipeline/audit-record';
import { AuditStage } from '../../src/fhir/pipeline/pipeline.stages';
import { registerTestClient } from '../support/auth';
import { FHIR_JSON } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

type Agent = TestApp['api'];

const RUN = Date.now().toString(36);

describe('$reindex', () => {
  let t: TestApp;
  let admin: Agent;
  let audited: AuditRecord[];
  beforeAll(async () => {
    t = await createTestApp();
    const client = await registerTestClient(t, { role: 'admin', scopes: ['system/Organization.cruds'], purposes: ['HSYSADMIN'] });
    admin = request.agent(t.http).set('Authorization', `Bearer ${await client.token()}`);
    const audit = t.app.get(AuditStage, { strict: false });
    const record = audit.record.bind(audit);
    audit.record = async (r: AuditRecord, result) => {
      if (r.kind === 'operation' && r.subtype === 'reindex') audited.push(r);
      return record(r, result);
    };
  }, 30_000);
  beforeEach(() => {
    audited = [];
  });
  afterAll(() => t.close());

  async function current(type: string): Promise<string[]> {
    const rows: { id: string }[] = await t.db.query(`SELECT id FROM resource WHERE resource_type = $1 AND NOT deleted ORDER BY id`, [type]);
    return rows.map((r) => r.id);
  }

  it('rebuilds a type in bounded calls that continue by cursor, and restores lost index rows', async () => {
    for (let n = 0; n < 3; n++) {
      const res = await t.api.post('/fhir/Basic').set('Content-Type', FHIR_JSON).send({ resourceType: 'Basic', code: { text: `reindex-${RUN}-${n}` } });
      expect(res.status).toBe(201);
    }
    const all = await current('Basic');
    // Lose the index rows of every Basic: searching by code finds nothing until they are rebuilt.
    await t.db.query(`DELETE FROM search_token WHERE resource_type = 'Basic'`);
    expect((await t.api.get(`/fhir/Basic?code:text=reindex-${RUN}`)).body.entry ?? []).toHaveLength(0);

    const first = await admin.post('/fhir/Basic/$reindex?maxResources=2');
    expect(first.status).toBe(200);
    expect(first.body).toEqual({
      resourceType: 'Parameters',
      parameter: [
        { name: 'processed', valueInteger: 2 },
        { name: 'complete', valueBoolean: false },
        { name: 'cursor', valueString: `Basic/${all[1]}` },
      ],
    });
    // The same via a Parameters body, continuing where the first call stopped.
    const rest = await admin
      .post('/fhir/Basic/$reindex')
      .set('Content-Type', FHIR_JSON)
      .send({ resourceType: 'Parameters', parameter: [{ name: 'cursor', valueString: `Basic/${all[1]}` }] });
    expect(rest.body.parameter).toEqual([
      { name: 'processed', valueInteger: all.length - 2 },
      { name: 'complete', valueBoolean: true },
    ]);
    const found = await t.api.get(`/fhir/Basic?code:text=reindex-${RUN}&_count=10`);
    expect(found.body.entry).toHaveLength(3);
  });

  it('system level: all types, or those named by type', async () => {
    const [{ n }] = await t.db.query(`SELECT count(*)::int AS n FROM resource WHERE resource_type IN ('Basic', 'Organization') AND NOT deleted`);
    const res = await admin.post('/fhir/$reindex?type=Organization,Basic&maxResources=100000');
    expect(res.status).toBe(200);
    expect(res.body.parameter).toEqual([
      { name: 'processed', valueInteger: n },
      { name: 'complete', valueBoolean: true },
    ]);
    const everything = await admin.post('/fhir/$reindex?maxResources=1');
    expect(everything.body.parameter[0]).toEqual({ name: 'processed', valueInteger: 1 });
    expect(everything.body.parameter[1]).toEqual({ name: 'complete', valueBoolean: false });
    expect(everything.body.parameter[2].valueString).toMatch(/^[A-Z][A-Za-z]+\/[A-Za-z0-9\-.]+$/);
    expect(audited.map((a) => [a.kind, a.subtype, a.outcome, a.status])).toEqual([
      ['operation', 'reindex', 'success', 200],
      ['operation', 'reindex', 'success', 200],
    ]);
  });

  it.each([
    ['hospital', ['system/*.*'], 'TREAT'],
    ['auditor', ['system/AuditEvent.rs'], 'HOPERAT'],
    ['public-health', ['system/*.rs'], 'PUBHLTH'],
  ] as const)('is refused to the %s role with 403 and audited', async (role, scopes, purpose) => {
    const client = await registerTestClient(t, { role, scopes: [...scopes], purposes: [purpose] });
    const token = await client.token();
    for (const path of ['/fhir/$reindex', '/fhir/Patient/$reindex']) {
      const res = await request(t.http).post(path).set('Authorization', `Bearer ${token}`);
      expect({ status: res.status, resourceType: res.body.resourceType, code: res.body.issue[0].code }).toEqual({
        status: 403,
        resourceType: 'OperationOutcome',
        code: 'forbidden',
      });
    }
    expect(audited.map((a) => [a.kind, a.subtype, a.outcome, a.status])).toEqual([
      ['operation', 'reindex', 'failure', 403],
      ['operation', 'reindex', 'failure', 403],
    ]);
  });

  it('needs a token', async () => {
    const res = await request(t.http).post('/fhir/$reindex');
    expect(res.status).toBe(401);
  });

  it.each([
    ['/fhir/Patient/$reindex?maxResources=0', 'maxResources'],
    ['/fhir/Patient/$reindex?maxResources=1000001', 'maxResources'],
    ['/fhir/Patient/$reindex?cursor=nonsense', 'cursor'],
    ['/fhir/Patient/$reindex?cursor=Observation/1', 'cursor'],
    ['/fhir/Patient/$reindex?type=Patient', 'type'],
    ['/fhir/$reindex?type=Nothing', 'type'],
    ['/fhir/Patient/$reindex?color=blue', 'color'],
  ])('bad input %s is a 400 naming %s', async (path, param) => {
    const res = await admin.post(path);
    expect({ status: res.status, code: res.body.issue[0].code, expression: res.body.issue[0].expression }).toEqual({
      status: 400,
      code: 'invalid',
      expression: [param],
    });
  });

  it('changes state, so GET is 405; unknown operations and levels are refused', async () => {
    const get = await admin.get('/fhir/Patient/$reindex');
    expect({ status: get.status, code: get.body.issue[0].code }).toEqual({ status: 405, code: 'not-supported' });
    expect((await admin.post('/fhir/Patient/1/$reindex')).status).toBe(404);
    // An operation the server does not have is not supported (404), never a permission question (403).
    const unknown = await admin.post('/fhir/$no-such-operation');
    expect(unknown.status).toBe(404);
    expect(unknown.body.issue[0]).toMatchObject({ code: 'not-supported', diagnostics: 'Operation $no-such-operation is not supported by this server' });
    expect((await admin.put('/fhir/$reindex')).status).toBe(405);
    expect((await admin.post('/fhir/Nothing/$reindex')).status).toBe(404);
  });

  it('is listed in the CapabilityStatement', async () => {
    const cs = await request(t.http).get('/fhir/metadata');
    const definition = 'http://hie.example.org/fhir/OperationDefinition/reindex';
    expect(cs.body.rest[0].operation).toEqual(expect.arrayContaining([{ name: 'reindex', definition }]));
    const patient = cs.body.rest[0].resource.find((r: { type: string }) => r.type === 'Patient');
    expect(patient.operation).toEqual(expect.arrayContaining([{ name: 'reindex', definition }]));
  });
});
