import request from 'supertest';
import { registerTestClient } from '../support/auth';
import { FHIR_JSON, hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

type Agent = TestApp['api'];

const HIE_PATIENT = 'http://hie.example.org/fhir/StructureDefinition/hie-patient';
const CONFIDENTIALITY = 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality';
const ALL_OK = { resourceType: 'OperationOutcome', issue: [{ severity: 'information', code: 'informational', diagnostics: 'All OK' }] };
const TABLES = ['resource', 'resource_history', 'search_token', 'search_string', 'search_date', 'search_quantity', 'search_reference', 'search_uri', 'search_composite'];

/** `$validate`, `$meta`, `$meta-add`, `$meta-delete` (R4 Resource-validate, Resource-meta, -meta-add, -meta-delete). */
describe('$validate and the $meta operations', () => {
  let t: TestApp;
  let other: Agent;
  let readOnly: Agent;
  const ids: Record<string, string> = {};

  const post = (agent: Agent, path: string, body: unknown) => agent.post(`/fhir/${path}`).set('Content-Type', FHIR_JSON).send(body as object);
  const parameters = (...parameter: Record<string, unknown>[]) => ({ resourceType: 'Parameters', parameter });
  /** Rows of every resource and index table: $validate must change none of them. */
  const rowCounts = async (): Promise<Record<string, number>> => {
    const out: Record<string, number> = {};
    for (const table of TABLES) out[table] = (await t.db.query(`SELECT count(*)::int AS n FROM ${table}`))[0].n;
    return out;
  };
  const stored = async (type: string, id: string) =>
    (await t.db.query(`SELECT version_id, content, security_labels FROM resource WHERE resource_type = $1 AND id = $2`, [type, id]))[0];

  beforeAll(async () => {
    t = await createTestApp();
    const agentOf = async (opts: Parameters<typeof registerTestClient>[1]): Promise<Agent> => {
      const client = await registerTestClient(t, opts);
      return request.agent(t.http).set('Authorization', `Bearer ${await client.token()}`);
    };
    other = await agentOf({ role: 'hospital', organization: 'org-other', scopes: ['system/*.cruds'] });
    readOnly = await agentOf({ role: 'hospital', scopes: ['system/*.rs'] });
    const create = async (key: string, body: Record<string, unknown>) => {
      const res = await post(t.api, String(body.resourceType), body);
      expect(res.status).toBe(201);
      ids[key] = res.body.id;
    };
    await create('patient', hiePatient({ meta: { tag: [{ system: 'urn:hie:tag', code: 'visible' }] } }));
    await create('secret', hiePatient({ meta: { tag: [{ system: 'urn:hie:tag', code: 'secret' }], security: [{ system: CONFIDENTIALITY, code: 'R' }] } }));
    await create('obs', { resourceType: 'Observation', status: 'final', code: { text: 'weight' }, meta: { tag: [{ code: 'no-system' }] } });
  }, 60_000);
  afterAll(() => t.close());

  describe('$validate', () => {
    it('a valid resource as the body: 200 All OK, and nothing is stored', async () => {
      const before = await rowCounts();
      const res = await post(t.api, 'Patient/$validate', hiePatient());
      expect({ status: res.status, body: res.body }).toEqual({ status: 200, body: ALL_OK });
      const wrapped = await post(t.api, 'Patient/$validate', parameters({ name: 'resource', resource: hiePatient() }, { name: 'mode', valueCode: 'create' }));
      expect({ status: wrapped.status, body: wrapped.body }).toEqual({ status: 200, body: ALL_OK });
      expect(await rowCounts()).toEqual(before);
    });

    it('reports base errors (required binding) and the HIE profile, stores nothing', async () => {
      const before = await rowCounts();
      const bad = await post(t.api, 'Patient/$validate', parameters({ name: 'resource', resource: hiePatient({ gender: 'robot' }) }));
      expect(bad.status).toBe(200);
      expect(bad.body.resourceType).toBe('OperationOutcome');
      const notInValueSet = "Value 'robot' is not in the required value set http://hl7.org/fhir/ValueSet/administrative-gender";
      expect(bad.body.issue).toEqual([
        { severity: 'error', code: 'code-invalid', details: { text: notInValueSet }, diagnostics: notInValueSet, expression: ['Patient.gender'] },
      ]);
      const noGender = { ...hiePatient() };
      delete noGender.gender;
      const profile = await post(t.api, 'Patient/$validate', noGender);
      expect(profile.status).toBe(200);
      expect(profile.body.issue).toEqual([
        {
          severity: 'error',
          code: 'structure',
          details: { text: 'Missing required property' },
          diagnostics: `Missing required property (profile ${HIE_PATIENT})`,
          expression: ['Patient.gender'],
        },
      ]);
      expect(await rowCounts()).toEqual(before);
    });

    it('an unknown profile asked for is an error issue; a known one is applied', async () => {
      const res = await post(t.api, 'Patient/$validate', parameters({ name: 'resource', resource: hiePatient() }, { name: 'profile', valueCanonical: 'http://example.org/nothing' }));
      expect({ status: res.status, issue: res.body.issue }).toEqual({
        status: 200,
        issue: [{ severity: 'error', code: 'not-supported', diagnostics: 'Profile http://example.org/nothing is not known to this server', expression: ['profile'] }],
      });
      const known = await t.api.post(`/fhir/Patient/$validate?profile=${encodeURIComponent(HIE_PATIENT)}`).set('Content-Type', FHIR_JSON).send(hiePatient());
      expect({ status: known.status, body: known.body }).toEqual({ status: 200, body: ALL_OK });
    });

    it('GET on an instance validates the stored resource; unknown instance 404', async () => {
      const res = await t.api.get(`/fhir/Patient/${ids.patient}/$validate`);
      expect({ status: res.status, body: res.body }).toEqual({ status: 200, body: ALL_OK });
      const missing = await t.api.get('/fhir/Patient/no-such-patient/$validate');
      expect({ status: missing.status, issue: missing.body.issue }).toEqual({
        status: 404,
        issue: [{ severity: 'error', code: 'not-found', diagnostics: 'Patient/no-such-patient is not known' }],
      });
    });

    it('mode=update checks the id and the write rule; mode=delete the write rule; nothing changes', async () => {
      const before = await rowCounts();
      const version = (await stored('Patient', ids.patient)).version_id;
      const resource = hiePatient({ id: ids.patient });
      const own = await post(t.api, `Patient/${ids.patient}/$validate`, parameters({ name: 'resource', resource }, { name: 'mode', valueCode: 'update' }));
      expect({ status: own.status, body: own.body }).toEqual({ status: 200, body: ALL_OK });
      const foreign = await post(other, `Patient/${ids.patient}/$validate`, parameters({ name: 'resource', resource }, { name: 'mode', valueCode: 'update' }));
      expect({ status: foreign.status, issue: foreign.body.issue }).toEqual({
        status: 200,
        issue: [{ severity: 'error', code: 'forbidden', diagnostics: `Patient/${ids.patient} is not a resource this client may change` }],
      });
      const noId = await post(t.api, 'Patient/$validate', parameters({ name: 'resource', resource: hiePatient() }, { name: 'mode', valueCode: 'update' }));
      expect(noId.body.issue).toEqual([{ severity: 'error', code: 'required', diagnostics: 'An update must carry the resource id', expression: ['Patient.id'] }]);

      const deletable = await post(t.api, `Patient/${ids.patient}/$validate?mode=delete`, {});
      expect({ status: deletable.status, body: deletable.body }).toEqual({ status: 200, body: ALL_OK });
      for (const [agent, id] of [[other, ids.patient], [t.api, 'no-such-patient']] as const) {
        const res = await post(agent, `Patient/${id}/$validate`, parameters({ name: 'mode', valueCode: 'delete' }));
        expect({ status: res.status, issue: res.body.issue }).toEqual({
          status: 200,
          issue: [{ severity: 'error', code: 'forbidden', diagnostics: `Patient/${id} is not a resource this client may delete` }],
        });
      }
      expect((await stored('Patient', ids.patient)).version_id).toBe(version);
      expect(await rowCounts()).toEqual(before);
    });

    it('input it cannot validate is a 400 OperationOutcome', async () => {
      const cases: [string, unknown, string][] = [
        ['Patient/$validate?mode=purge', hiePatient(), "mode must be create, update or delete, not 'purge'"],
        ['Patient/$validate', { resourceType: 'Observation', status: 'final', code: { text: 'x' } }, "resourceType 'Observation' does not match the type in the URL (Patient)"],
        ['Patient/$validate', {}, '$validate needs the resource to validate (the body, or a Parameters resource)'],
        ['Patient/$validate', parameters({ name: 'colour', valueString: 'red' }), "Unknown parameter 'colour' for $validate"],
        ['Patient/$validate?mode=delete', {}, '$validate with mode=delete is invoked on the instance to delete'],
      ];
      for (const [path, body, diagnostics] of cases) {
        const res = await post(t.api, path, body);
        expect({ path, status: res.status, diagnostics: res.body.issue?.[0]?.diagnostics }).toEqual({ path, status: 400, diagnostics });
      }
    });
  });

  describe('$meta', () => {
    it('instance and version level: the meta of that resource or version', async () => {
      const res = await t.api.get(`/fhir/Observation/${ids.obs}/$meta`);
      expect(res.status).toBe(200);
      const current = (await stored('Observation', ids.obs)).content.meta;
      expect(res.body).toEqual({ resourceType: 'Parameters', parameter: [{ name: 'return', valueMeta: current }] });
      expect(current.tag).toEqual([{ code: 'no-system' }]);

      const updated = await t.api
        .put(`/fhir/Observation/${ids.obs}`)
        .set('Content-Type', FHIR_JSON)
        .send({ resourceType: 'Observation', id: ids.obs, status: 'final', code: { text: 'weight' }, meta: { tag: [{ code: 'second' }] } });
      expect(updated.status).toBe(200);
      const v1 = await t.api.get(`/fhir/Observation/${ids.obs}/_history/1/$meta`);
      expect(v1.body.parameter[0].valueMeta).toEqual(current);
      const v2 = await t.api.get(`/fhir/Observation/${ids.obs}/$meta`);
      expect(v2.body.parameter[0].valueMeta).toEqual({ ...updated.body.meta, tag: [{ code: 'second' }] });
      expect((await t.api.get(`/fhir/Observation/${ids.obs}/_history/9/$meta`)).status).toBe(404);
      expect((await t.api.get('/fhir/Observation/nothing-here/$meta')).status).toBe(404);
    });

    it('type and system level: the distinct profiles, tags and labels in use on what the client may read', async () => {
      const own = await t.api.get('/fhir/Patient/$meta');
      expect(own.body).toEqual({
        resourceType: 'Parameters',
        parameter: [{ name: 'return', valueMeta: { tag: [{ system: 'urn:hie:tag', code: 'secret' }, { system: 'urn:hie:tag', code: 'visible' }], security: [{ system: CONFIDENTIALITY, code: 'R' }] } }],
      });
      // Another organization may not see the restricted (R) Patient: its tag and label are not in use for it.
      const foreign = await other.get('/fhir/Patient/$meta');
      expect(foreign.body.parameter).toEqual([{ name: 'return', valueMeta: { tag: [{ system: 'urn:hie:tag', code: 'visible' }] } }]);
      const system = await t.api.get('/fhir/$meta');
      expect(system.body.parameter).toEqual([
        {
          name: 'return',
          valueMeta: { tag: [{ code: 'second' }, { system: 'urn:hie:tag', code: 'secret' }, { system: 'urn:hie:tag', code: 'visible' }], security: [{ system: CONFIDENTIALITY, code: 'R' }] },
        },
      ]);
    });

    it('needs the read scope of the type (any type at system level)', async () => {
      const client = await registerTestClient(t, { role: 'hospital', scopes: ['system/Patient.rs'] });
      const patientOnly = request.agent(t.http).set('Authorization', `Bearer ${await client.token()}`);
      expect((await patientOnly.get('/fhir/Patient/$meta')).status).toBe(200);
      for (const path of ['/fhir/Observation/$meta', '/fhir/$meta']) {
        const res = await patientOnly.get(path);
        expect({ path, status: res.status, code: res.body.issue[0].code }).toEqual({ path, status: 403, code: 'forbidden' });
      }
      // Hospitals may read AuditEvents they submitted by id but not search them: no values in use either.
      const audit = await t.api.get('/fhir/AuditEvent/$meta');
      expect({ status: audit.status, issue: audit.body.issue }).toEqual({
        status: 403,
        issue: [{ severity: 'error', code: 'forbidden', diagnostics: '$meta on AuditEvent needs the right to search it' }],
      });
    });
  });

  describe('$meta-add and $meta-delete', () => {
    it('add a tag, a label and a profile without a new version; searchable at once; audited as an update', async () => {
      const before = await stored('Patient', ids.patient);
      const historyRows = (await t.db.query(`SELECT count(*)::int AS n FROM resource_history WHERE id = $1`, [ids.patient]))[0].n;
      const res = await post(
        t.api,
        `Patient/${ids.patient}/$meta-add`,
        parameters({
          name: 'meta',
          valueMeta: {
            profile: [HIE_PATIENT],
            // The same tag again (another display) is not added twice.
            tag: [{ system: 'urn:hie:tag', code: 'visible', display: 'again' }, { system: 'urn:hie:tag', code: 'added' }],
            security: [{ system: CONFIDENTIALITY, code: 'N' }],
          },
        }),
      );
      expect(res.status).toBe(200);
      const meta = {
        ...before.content.meta,
        profile: [HIE_PATIENT],
        tag: [{ system: 'urn:hie:tag', code: 'visible' }, { system: 'urn:hie:tag', code: 'added' }],
        security: [{ system: CONFIDENTIALITY, code: 'N' }],
      };
      expect(res.body).toEqual({ resourceType: 'Parameters', parameter: [{ name: 'return', valueMeta: meta }] });
      const after = await stored('Patient', ids.patient);
      expect({ version: after.version_id, meta: after.content.meta, labels: after.security_labels }).toEqual({ version: before.version_id, meta, labels: [`${CONFIDENTIALITY}|N`] });
      const history = await t.db.query(`SELECT content, security_labels FROM resource_history WHERE id = $1 AND version_id = $2`, [ids.patient, before.version_id]);
      expect(history).toEqual([{ content: after.content, security_labels: [`${CONFIDENTIALITY}|N`] }]);
      expect((await t.db.query(`SELECT count(*)::int AS n FROM resource_history WHERE id = $1`, [ids.patient]))[0].n).toBe(historyRows);
      const found = await t.api.get('/fhir/Patient?_tag=urn:hie:tag|added');
      expect(found.body.entry.map((e: { resource: { id: string } }) => e.resource.id)).toEqual([ids.patient]);
      const [audit] = await t.db.query(`SELECT action, outcome FROM audit_event WHERE 'meta-add' = ANY(subtype) ORDER BY seq DESC LIMIT 1`);
      expect(audit.action).toBe('U');

      const removed = await post(t.api, `Patient/${ids.patient}/$meta-delete`, parameters({ name: 'meta', valueMeta: { tag: [{ system: 'urn:hie:tag', code: 'added' }], security: [{ system: CONFIDENTIALITY, code: 'N' }] } }));
      expect(removed.status).toBe(200);
      const { security: _dropped, ...withoutLabels } = meta;
      expect(removed.body.parameter).toEqual([{ name: 'return', valueMeta: { ...withoutLabels, tag: [{ system: 'urn:hie:tag', code: 'visible' }] } }]);
      const final = await stored('Patient', ids.patient);
      expect({ version: final.version_id, labels: final.security_labels }).toEqual({ version: before.version_id, labels: [] });
      expect((await t.api.get('/fhir/Patient?_tag=urn:hie:tag|added')).body).toMatchObject({ total: 0 });
    });

    it('403 for another organization, a missing resource and a read-only scope; nothing changes', async () => {
      const before = await stored('Patient', ids.patient);
      const body = parameters({ name: 'meta', valueMeta: { tag: [{ code: 'x' }] } });
      for (const [agent, id, diagnostics] of [
        [other, ids.patient, `Patient/${ids.patient} is not a resource this client may change`],
        [t.api, 'no-such-patient', 'Patient/no-such-patient is not a resource this client may change'],
        [readOnly, ids.patient, '$meta-add needs a granted scope allowing system/Patient.u'],
      ] as const) {
        const res = await post(agent, `Patient/${id}/$meta-add`, body);
        expect({ status: res.status, issue: res.body.issue }).toEqual({ status: 403, issue: [{ severity: 'error', code: 'forbidden', diagnostics }] });
      }
      expect(await stored('Patient', ids.patient)).toEqual(before);
    });

    it('refuses GET, the version level, and a meta with other elements', async () => {
      expect((await t.api.get(`/fhir/Patient/${ids.patient}/$meta-add`)).status).toBe(405);
      // Not offered on types the hospital role may not update.
      const audit = await post(t.api, 'AuditEvent/some-event/$meta-add', parameters({ name: 'meta', valueMeta: { tag: [{ code: 'x' }] } }));
      expect({ status: audit.status, issue: audit.body.issue }).toEqual({
        status: 404,
        issue: [{ severity: 'error', code: 'not-supported', diagnostics: 'Operation $meta-add is not defined at instance level for AuditEvent' }],
      });
      const version = await post(t.api, `Patient/${ids.patient}/_history/1/$meta-add`, parameters({ name: 'meta', valueMeta: { tag: [{ code: 'x' }] } }));
      expect({ status: version.status, issue: version.body.issue }).toEqual({
        status: 404,
        issue: [{ severity: 'error', code: 'not-supported', diagnostics: 'Operation $meta-add is not defined at version level' }],
      });
      const bad = await post(t.api, `Patient/${ids.patient}/$meta-delete`, parameters({ name: 'meta', valueMeta: { versionId: '7' } }));
      expect({ status: bad.status, issue: bad.body.issue }).toEqual({
        status: 400,
        issue: [{ severity: 'error', code: 'invalid', diagnostics: 'meta may only carry profile, tag and security, not versionId', expression: ['meta.versionId'] }],
      });
    });
  });

  it('the CapabilityStatement lists the operations with the server definitions, derived from the R4 ones', async () => {
    const cs = await request(t.http).get('/fhir/metadata');
    const patient = cs.body.rest[0].resource.find((r: { type: string }) => r.type === 'Patient');
    const names = ['validate', 'meta', 'meta-add', 'meta-delete'];
    expect(patient.operation.filter((o: { name: string }) => names.includes(o.name))).toEqual([
      { name: 'meta', definition: 'http://hie.example.org/fhir/OperationDefinition/meta' },
      { name: 'meta-add', definition: 'http://hie.example.org/fhir/OperationDefinition/meta-add' },
      { name: 'meta-delete', definition: 'http://hie.example.org/fhir/OperationDefinition/meta-delete' },
      { name: 'validate', definition: 'http://hie.example.org/fhir/OperationDefinition/validate' },
    ]);
    expect(cs.body.rest[0].operation.filter((o: { name: string }) => names.includes(o.name))).toEqual([
      { name: 'meta', definition: 'http://hie.example.org/fhir/OperationDefinition/meta' },
    ]);
    // Each is served, and derives from the R4 definition of the same operation.
    for (const name of names) {
      const res = await t.api.get(`/fhir/OperationDefinition/${name}`);
      expect({ status: res.status, code: res.body.code, base: res.body.base }).toEqual({
        status: 200,
        code: name,
        base: `http://hl7.org/fhir/OperationDefinition/Resource-${name}`,
      });
    }
  });
});
