import { Injectable, Module, OnModuleInit, Type } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { getDataSourceToken } from '@nestjs/typeorm';
import type { OperationDefinition, Parameters } from '@medplum/fhirtypes';
import request from 'supertest';
import type { DataSource } from 'typeorm';
import { AppModule } from '../../src/app.module';
import { configureApp } from '../../src/app.setup';
import { FhirModule } from '../../src/fhir/fhir.module';
import { FhirOperation, OperationLevel } from '../../src/fhir/operations/fhir-operation';
import { parseOperationInput } from '../../src/fhir/operations/operation-parameters';
import { OperationRegistry } from '../../src/fhir/operations/operation.registry';
import type { InteractionResult, OperationInteraction } from '../../src/fhir/pipeline/interaction';
import type { HieRole } from '../../src/fhir/pipeline/principal';
import { hospitalAgent, registerTestClient } from '../support/auth';
import { FHIR_JSON, hiePatient } from '../support/fixtures';
import type { TestApp } from '../support/test-app';

type Agent = TestApp['api'];

/** A test operation's definition in the server's namespace (what a module would ship). */
function testDefinition(id: string, code: string, resource: string[], parameter: OperationDefinition['parameter']): OperationDefinition {
  return {
    resourceType: 'OperationDefinition',
    id,
    url: `http://hie.example.org/fhir/OperationDefinition/${id}`,
    name: id.replace(/-/g, ''),
    status: 'active',
    kind: 'operation',
    code,
    resource: resource as OperationDefinition['resource'],
    system: false,
    type: false,
    instance: true,
    affectsState: false,
    parameter,
  };
}

/** A second `$everything`, on Encounter: same name, another type, its own definition and parameters. */
@Injectable()
class EncounterEverything extends FhirOperation implements OnModuleInit {
  readonly name: string = 'everything';
  readonly definition = testDefinition('test-encounter-everything', 'everything', ['Encounter'], [
    { name: 'limit', use: 'in', min: 0, max: '1', type: 'positiveInt' },
    { name: 'return', use: 'out', min: 1, max: '1', type: 'Parameters' },
  ]);
  readonly levels: readonly OperationLevel[] = ['instance'];
  override readonly resourceTypes = ['Encounter'];
  readonly affectsState = false;
  readonly roles = ['hospital'] as const;

  constructor(private readonly operations: OperationRegistry) {
    super();
  }

  onModuleInit(): void {
    this.operations.register(this);
  }

  async execute(_ctx: unknown, i: OperationInteraction): Promise<InteractionResult> {
    const input = parseOperationInput(this.definition, i);
    const parameters: Parameters = {
      resourceType: 'Parameters',
      parameter: [
        { name: 'encounter', valueString: i.id },
        { name: 'limit', valueInteger: input.integer('limit') ?? 0 },
      ],
    };
    return { status: 200, resource: parameters };
  }
}

/** A second registration of what `EverythingOperation` already is: Patient/{id}/$everything. */
@Injectable()
class PatientEverythingAgain extends EncounterEverything {
  override readonly definition = testDefinition('test-patient-everything-again', 'everything', ['Patient'], []);
  override readonly resourceTypes = ['Patient'];
}

/** `$validate` on Patient only, at type level: overlaps the every-type `$validate`. */
@Injectable()
class PatientValidateAgain extends EncounterEverything {
  override readonly name = 'validate';
  override readonly definition = { ...testDefinition('test-patient-validate', 'validate', ['Patient'], []), type: true, instance: false };
  override readonly levels: readonly OperationLevel[] = ['type'];
  override readonly resourceTypes = ['Patient'];
}

/** The real application plus extra operation providers (a module plugging in its operations). */
async function startApp(extra: Type[]): Promise<TestApp> {
  @Module({ imports: [FhirModule], providers: extra })
  class ExtraOperations {}
  const moduleRef = await Test.createTestingModule({ imports: [AppModule, ExtraOperations] }).compile();
  const app = moduleRef.createNestApplication({ bodyParser: false, bufferLogs: true });
  configureApp(app);
  try {
    await app.init();
  } catch (err) {
    await app.close();
    throw err;
  }
  const partial = { app, http: app.getHttpServer(), db: app.get<DataSource>(getDataSourceToken()), close: () => app.close() };
  return { ...partial, api: await hospitalAgent(partial as TestApp) };
}

describe('operations keyed by (name, level, type), checked and described by their OperationDefinitions', () => {
  let t: TestApp;
  let patientId: string;
  let admin: Agent;
  let auditor: Agent;

  beforeAll(async () => {
    t = await startApp([EncounterEverything]);
    const created = await t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(hiePatient());
    expect(created.status).toBe(201);
    patientId = created.body.id;
    const adminClient = await registerTestClient(t, { role: 'admin', scopes: ['system/Organization.cruds'], purposes: ['HSYSADMIN'] });
    admin = request.agent(t.http).set('Authorization', `Bearer ${await adminClient.token()}`);
    const auditorClient = await registerTestClient(t, { role: 'auditor', scopes: ['system/AuditEvent.rs'], purposes: ['HOPERAT'] });
    auditor = request.agent(t.http).set('Authorization', `Bearer ${await auditorClient.token()}`);
  }, 60_000);
  afterAll(() => t.close());

  it('two operations of one name on different types both work, each with its own parameters', async () => {
    const patient = await t.api.get(`/fhir/Patient/${patientId}/$everything`);
    expect({ status: patient.status, type: patient.body.type, ids: patient.body.entry.map((e: { resource: { id: string } }) => e.resource.id) }).toEqual({
      status: 200,
      type: 'searchset',
      ids: [patientId],
    });
    const encounter = await t.api.get('/fhir/Encounter/enc-1/$everything?limit=3');
    expect({ status: encounter.status, body: encounter.body }).toEqual({
      status: 200,
      body: { resourceType: 'Parameters', parameter: [{ name: 'encounter', valueString: 'enc-1' }, { name: 'limit', valueInteger: 3 }] },
    });
    // Each checks its own definition: `limit` is not Patient/$everything's, `_since` is not Encounter's.
    const patientLimit = await t.api.get(`/fhir/Patient/${patientId}/$everything?limit=3`);
    expect([patientLimit.status, patientLimit.body.issue[0].expression]).toEqual([400, ['limit']]);
    const encounterSince = await t.api.get('/fhir/Encounter/enc-1/$everything?_since=2024-01-01T00:00:00Z');
    expect([encounterSince.status, encounterSince.body.issue[0].expression]).toEqual([400, ['_since']]);
    // Not registered for Observation, nor at Encounter's type level.
    const other = await t.api.get('/fhir/Observation/o-1/$everything');
    expect([other.status, other.body.issue[0].code, other.body.issue[0].diagnostics]).toEqual([404, 'not-supported', 'Operation $everything is not defined at instance level for Observation']);
    expect((await t.api.get('/fhir/Encounter/$everything')).status).toBe(404);
    // Both are advertised, each with its own definition.
    const cs = await request(t.http).get('/fhir/metadata');
    const operationsOf = (type: string): unknown =>
      cs.body.rest[0].resource.find((r: { type: string }) => r.type === type).operation.filter((o: { name: string }) => o.name === 'everything');
    expect(operationsOf('Patient')).toEqual([{ name: 'everything', definition: 'http://hie.example.org/fhir/OperationDefinition/patient-everything' }]);
    expect(operationsOf('Encounter')).toEqual([{ name: 'everything', definition: 'http://hie.example.org/fhir/OperationDefinition/test-encounter-everything' }]);
  });

  it('every advertised operation definition is served, by id and by url', async () => {
    const cs = await request(t.http).get('/fhir/metadata');
    const rest = cs.body.rest[0] as { operation?: { definition: string }[]; resource: { operation?: { definition: string }[] }[] };
    const urls = [...new Set([...(rest.operation ?? []), ...rest.resource.flatMap((r) => r.operation ?? [])].map((o) => o.definition))].sort();
    const prefix = 'http://hie.example.org/fhir/OperationDefinition/';
    expect(urls).toEqual(
      ['access-report', 'evaluate-measure', 'export', 'group-export', 'ihe-pix', 'match', 'meta', 'meta-add', 'meta-delete', 'patient-everything', 'patient-export', 'person-link', 'person-merge', 'person-rematch', 'person-split', 'person-unlink', 'refer', 'reindex', 'test-encounter-everything', 'transfer-custodian', 'validate', 'verify-chain'].map(
        (id) => prefix + id,
      ),
    );
    for (const url of urls) {
      const id = url.slice(prefix.length);
      const read = await t.api.get(`/fhir/OperationDefinition/${id}`);
      expect({ url, status: read.status, resourceType: read.body.resourceType, id: read.body.id, definitionUrl: read.body.url }).toEqual({
        url,
        status: 200,
        resourceType: 'OperationDefinition',
        id,
        definitionUrl: url,
      });
      const search = await t.api.get(`/fhir/OperationDefinition?url=${encodeURIComponent(url)}`);
      expect({ url, status: search.status, total: search.body.total, ids: search.body.entry.map((e: { resource: { id: string } }) => e.resource.id) }).toEqual({
        url,
        status: 200,
        total: 1,
        ids: [id],
      });
    }
    // Where one derives from an R4 operation, `base` says which.
    const bases: Record<string, string | undefined> = {};
    for (const id of ['patient-everything', 'match', 'validate', 'meta', 'meta-add', 'meta-delete', 'reindex', 'access-report', 'verify-chain', 'export', 'patient-export', 'group-export', 'evaluate-measure']) {
      bases[id] = (await t.api.get(`/fhir/OperationDefinition/${id}`)).body.base;
    }
    expect(bases).toEqual({
      'patient-everything': 'http://hl7.org/fhir/OperationDefinition/Patient-everything',
      match: 'http://hl7.org/fhir/OperationDefinition/Patient-match',
      validate: 'http://hl7.org/fhir/OperationDefinition/Resource-validate',
      meta: 'http://hl7.org/fhir/OperationDefinition/Resource-meta',
      'meta-add': 'http://hl7.org/fhir/OperationDefinition/Resource-meta-add',
      'meta-delete': 'http://hl7.org/fhir/OperationDefinition/Resource-meta-delete',
      reindex: undefined,
      'access-report': undefined,
      'verify-chain': undefined,
      // Bulk Data Access 2.0 (issue 26).
      export: 'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export',
      'patient-export': 'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export',
      'group-export': 'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export',
      // Coverage statistics (issue 26).
      'evaluate-measure': 'http://hl7.org/fhir/OperationDefinition/Measure-evaluate-measure',
    });
  });

  it('stored OperationDefinitions are read and searched beside the server definitions', async () => {
    const stored = testDefinition('ignored', 'lookup-x', ['Patient'], []);
    delete stored.id;
    stored.url = 'http://example.org/fhir/OperationDefinition/lookup-x';
    const created = await t.api.post('/fhir/OperationDefinition').set('Content-Type', FHIR_JSON).send(stored);
    expect(created.status).toBe(201);
    const read = await t.api.get(`/fhir/OperationDefinition/${created.body.id}`);
    expect([read.status, read.body.url]).toEqual([200, stored.url]);
    const byUrl = await t.api.get(`/fhir/OperationDefinition?url=${encodeURIComponent(stored.url)}`);
    expect([byUrl.status, byUrl.body.entry.map((e: { resource: { id: string } }) => e.resource.id)]).toEqual([200, [created.body.id]]);
    // A URL in the server's namespace that names no server definition matches nothing.
    const none = await t.api.get(`/fhir/OperationDefinition?url=${encodeURIComponent('http://hie.example.org/fhir/OperationDefinition/nothing')}`);
    expect([none.status, none.body.total, none.body.entry]).toEqual([200, 0, []]);
    expect((await t.api.get('/fhir/OperationDefinition/nothing-here')).status).toBe(404);
    // A server definition's id cannot be written: a stored one there would never be read.
    const put = await t.api.put('/fhir/OperationDefinition/reindex').set('Content-Type', FHIR_JSON).send({ ...stored, id: 'reindex' });
    expect([put.status, put.body.issue[0].code, put.body.issue[0].diagnostics]).toEqual([405, 'not-supported', 'OperationDefinition/reindex is a definition of this server and cannot be changed']);
    expect((await t.api.delete('/fhir/OperationDefinition/reindex')).status).toBe(405);
    const stillServed = await t.api.get('/fhir/OperationDefinition/reindex');
    expect([stillServed.status, stillServed.body.url]).toEqual([200, 'http://hie.example.org/fhir/OperationDefinition/reindex']);
    expect((await t.db.query(`SELECT count(*)::int AS n FROM resource WHERE resource_type = 'OperationDefinition' AND id = 'reindex'`))[0].n).toBe(0);
  });

  it('a bad, unknown, repeated or missing parameter of each operation is a 400 naming it, and changes nothing', async () => {
    const before = await t.api.get(`/fhir/Patient/${patientId}`);
    const parameters = (...parameter: unknown[]): unknown => ({ resourceType: 'Parameters', parameter });
    const cases: [string, Agent, 'get' | 'post', string, unknown, string, string][] = [
      ['$reindex', admin, 'post', '/fhir/$reindex?maxResources=many', undefined, 'maxResources', 'invalid'],
      ['$reindex body', admin, 'post', '/fhir/$reindex', parameters({ name: 'maxResources', valueString: '5' }), 'maxResources', 'invalid'],
      ['$everything', t.api, 'get', `/fhir/Patient/${patientId}/$everything?_since=yesterday`, undefined, '_since', 'invalid'],
      ['$everything repeated', t.api, 'get', `/fhir/Patient/${patientId}/$everything?_count=1&_count=2`, undefined, '_count', 'invalid'],
      ['$validate', t.api, 'post', '/fhir/Patient/$validate', parameters({ name: 'profile', valueBoolean: true }), 'profile', 'invalid'],
      ['$meta', t.api, 'get', `/fhir/Patient/${patientId}/$meta?colour=red`, undefined, 'colour', 'invalid'],
      ['$meta-add', t.api, 'post', `/fhir/Patient/${patientId}/$meta-add`, parameters(), 'meta', 'required'],
      ['$meta-delete', t.api, 'post', `/fhir/Patient/${patientId}/$meta-delete`, parameters({ name: 'meta', valueMeta: { tag: [{ code: 'a' }] } }, { name: 'meta', valueMeta: { tag: [{ code: 'b' }] } }), 'meta', 'invalid'],
      ['$access-report', auditor, 'get', `/fhir/Patient/${patientId}/$access-report?_since=2024-13-01`, undefined, '_since', 'invalid'],
      ['$verify-chain', auditor, 'post', '/fhir/$verify-chain', parameters({ name: 'to', valueBoolean: true }), 'to', 'invalid'],
      ['$transfer-custodian', admin, 'post', `/fhir/Patient/${patientId}/$transfer-custodian`, parameters(), 'organization', 'required'],
      ['$transfer-custodian type', admin, 'post', `/fhir/Patient/${patientId}/$transfer-custodian`, parameters({ name: 'organization', valueString: 'Organization/x' }), 'organization', 'invalid'],
    ];
    for (const [label, agent, method, path, body, name, code] of cases) {
      const call = agent[method](path);
      const res = body === undefined ? await call : await call.set('Content-Type', FHIR_JSON).send(body as object);
      expect({ label, status: res.status, resourceType: res.body.resourceType, code: res.body.issue?.[0]?.code, expression: res.body.issue?.[0]?.expression }).toEqual({
        label,
        status: 400,
        resourceType: 'OperationOutcome',
        code,
        expression: [name],
      });
      expect(res.body.issue[0].diagnostics).toContain(`'${name}'`);
    }
    const after = await t.api.get(`/fhir/Patient/${patientId}`);
    expect(after.body).toEqual(before.body);
  });

  it('every advertised operation, at each level and type, refuses an undeclared parameter before it runs (nothing enqueued or written)', async () => {
    // The registry checks the input against the definition, so an operation cannot forget to
    // ($rematch did not: an admin's typo started a rematch pass). One agent per role; the first
    // the operation does not refuse (403) is the one whose answer counts.
    const agent = async (opts: { role: HieRole; scopes: string[]; purposes: string[]; clinicalAccess?: boolean }): Promise<Agent> =>
      request.agent(t.http).set('Authorization', `Bearer ${await (await registerTestClient(t, opts)).token()}`);
    const agents = [
      t.api,
      await agent({ role: 'admin', scopes: ['system/*.*'], purposes: ['HSYSADMIN'] }),
      await agent({ role: 'public-health', scopes: ['system/*.rs'], purposes: ['PUBHLTH'], clinicalAccess: true }),
      await agent({ role: 'auditor', scopes: ['system/AuditEvent.rs'], purposes: ['HOPERAT'] }),
    ];
    const count = async (): Promise<unknown> =>
      (await t.db.query(`SELECT (SELECT count(*)::int FROM pgboss.job) AS jobs, (SELECT count(*)::int FROM resource_history) AS versions`))[0];
    const before = await count();
    const cs = await request(t.http).get('/fhir/metadata');
    const rest = cs.body.rest[0] as { operation?: { definition: string }[]; resource: { type: string; operation?: { definition: string }[] }[] };
    const urls = new Set([...(rest.operation ?? []), ...rest.resource.flatMap((r) => r.operation ?? [])].map((o) => o.definition));
    const paths: string[] = [];
    for (const url of urls) {
      const d = (await t.api.get(`/fhir/OperationDefinition?url=${encodeURIComponent(url)}`)).body.entry[0].resource as OperationDefinition;
      const types = (d.resource ?? []).map((r): string => ((r as string) === 'Resource' ? 'Patient' : r));
      if (d.system) paths.push(`/fhir/$${d.code}`);
      for (const type of d.type ? types : []) paths.push(`/fhir/${type}/$${d.code}`);
      for (const type of d.instance ? types : []) paths.push(`/fhir/${type}/${type === 'Patient' ? patientId : 'any-1'}/$${d.code}`);
    }
    const answers: Record<string, unknown> = {};
    for (const path of paths) {
      for (const who of agents) {
        const res = await who.post(`${path}?zz-undeclared=1`).set('Content-Type', FHIR_JSON).set('Prefer', 'respond-async').send({ resourceType: 'Parameters' });
        if (res.status === 403 && who !== agents[agents.length - 1]) continue;
        answers[path] = [res.status, res.body.issue?.[0]?.code, res.body.issue?.[0]?.expression];
        break;
      }
    }
    expect(paths.length).toBeGreaterThanOrEqual(25);
    expect(answers).toEqual(Object.fromEntries(paths.map((p) => [p, [400, 'invalid', ['zz-undeclared']]])));
    expect(await count()).toEqual(before);
  });

  it('a duplicate registration fails start with a message naming the operation, level, type and both classes', async () => {
    await expect(startApp([PatientEverythingAgain])).rejects.toThrow(
      /^Operation \$everything is registered twice at instance level for Patient: (EverythingOperation and PatientEverythingAgain|PatientEverythingAgain and EverythingOperation)$/,
    );
    // One for a single type overlaps one for every type.
    await expect(startApp([PatientValidateAgain])).rejects.toThrow(
      /^Operation \$validate is registered twice at type level for (Patient|every type): (ValidateOperation and PatientValidateAgain|PatientValidateAgain and ValidateOperation)$/,
    );
  }, 60_000);
});
