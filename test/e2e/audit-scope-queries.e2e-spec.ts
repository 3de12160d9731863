import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { registerTestClient, TestClient } from '../support/auth';
import { FHIR_JSON, hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

/**
 * SMART v2 scope queries on the audit trail (docs/audit.md): an auditor granted only
 * `system/AuditEvent.rs?…` sees, in searches and reads by id, only the records matching its scope.
 */
describe('audit trail: AuditEvent scope queries', () => {
  let t: TestApp;
  let hospitalA: TestClient;
  let hospitalB: TestClient;
  const orgA = `org-scope-a-${Date.now().toString(36)}`;
  const orgB = `org-scope-b-${Date.now().toString(36)}`;
  const tag = `scopeq-${randomUUID().slice(0, 8)}`;
  /** AuditEvent ids by the request that made them. */
  const ids: Record<string, string> = {};

  async function onlyEventId(requestId: string): Promise<string> {
    const rows: { id: string }[] = await t.db.query(
      `SELECT id::text AS id FROM audit_event WHERE content::jsonb @> jsonb_build_object('entity', jsonb_build_array(jsonb_build_object('what', jsonb_build_object('identifier', jsonb_build_object('value', $1::text)))))`,
      [requestId],
    );
    expect(rows).toHaveLength(1);
    return rows[0].id;
  }

  beforeAll(async () => {
    t = await createTestApp();
    hospitalA = await registerTestClient(t, { role: 'hospital', organization: orgA });
    hospitalB = await registerTestClient(t, { role: 'hospital', organization: orgB });
    const tokenA = await hospitalA.token();
    const tokenB = await hospitalB.token();
    const created = await request(t.http).post('/fhir/Patient').set('Authorization', `Bearer ${tokenA}`).set('Content-Type', FHIR_JSON).send(hiePatient()).expect(201);
    const send = async (name: string, token: string, path: string, status: number) => {
      await request(t.http).get(path).set('Authorization', `Bearer ${token}`).set('X-Request-Id', `${tag}-${name}`).expect(status);
      ids[name] = await onlyEventId(`${tag}-${name}`);
    };
    await send('a-read', tokenA, `/fhir/Patient/${created.body.id}`, 200);
    await send('a-missing', tokenA, '/fhir/Patient/no-such-patient-scopeq', 404);
    await send('b-missing', tokenB, '/fhir/Patient/no-such-patient-scopeq', 404);
    await send('b-search', tokenB, '/fhir/Observation?code=scopeq', 200);
  });
  afterAll(() => t.close());

  async function auditor(scope: string): Promise<string> {
    const client = await registerTestClient(t, { role: 'auditor', scopes: [scope], purposes: ['HOPERAT'] });
    return client.token();
  }
  const searchIds = async (token: string, query: string): Promise<string[]> => {
    const res = await request(t.http).get(`/fhir/AuditEvent?${query}`).set('Authorization', `Bearer ${token}`);
    expect(res.status).toBe(200);
    return (res.body.entry ?? []).map((e: { resource: { id: string } }) => e.resource.id).sort();
  };
  it('system/AuditEvent.rs?outcome=4: searches and reads see refused requests only', async () => {
    const token = await auditor('system/AuditEvent.rs?outcome=4');
    expect(await searchIds(token, `agent=${hospitalA.clientId},${hospitalB.clientId}&subtype=read,search-type&_count=100`)).toEqual([ids['a-missing'], ids['b-missing']].sort());
    expect(await searchIds(token, `agent=${hospitalA.clientId}&outcome=0`)).toEqual([]);
    const read = (id: string) => request(t.http).get(`/fhir/AuditEvent/${id}`).set('Authorization', `Bearer ${token}`);
    expect((await read(ids['a-missing'])).body).toMatchObject({ resourceType: 'AuditEvent', id: ids['a-missing'], outcome: '4' });
    const hidden = await read(ids['a-read']);
    expect(hidden.status).toBe(404);
    expect(hidden.body.issue[0].code).toBe('not-found');
  });

  it('system/AuditEvent.rs?agent=Organization/<B>: one organization’s records only; an unrestricted scope sees both', async () => {
    const token = await auditor(`system/AuditEvent.rs?agent=Organization/${orgB}`);
    expect(await searchIds(token, `agent=${hospitalA.clientId},${hospitalB.clientId}&subtype=read,search-type&_count=100`)).toEqual([ids['b-missing'], ids['b-search']].sort());
    expect(await searchIds(token, `agent=${hospitalA.clientId}`)).toEqual([]);
    const unrestricted = await auditor('system/AuditEvent.rs');
    expect(await searchIds(unrestricted, `agent=${hospitalA.clientId},${hospitalB.clientId}&subtype=read,search-type&_count=100`)).toEqual(
      [ids['a-read'], ids['a-missing'], ids['b-missing'], ids['b-search']].sort(),
    );
  });

  it('a scope restricted by a parameter the audit trail cannot answer is refused, never widened', async () => {
    // Registered directly (the admin API refuses it: see below), as an older registration might be.
    const token = await auditor('system/AuditEvent.rs?site=node-1');
    const res = await request(t.http).get(`/fhir/AuditEvent?agent=${hospitalA.clientId}`).set('Authorization', `Bearer ${token}`);
    expect(res.status).toBe(403);
    expect(res.body.issue[0]).toMatchObject({
      code: 'forbidden',
      diagnostics: "Scope system/AuditEvent.rs?site=node-1 restricts AuditEvent by 'site'; the audit trail answers patient, agent, entity, date, action, outcome, purpose, type, subtype",
    });
    const admin = await registerTestClient(t, { role: 'admin', scopes: ['system/Organization.cruds'], purposes: ['HSYSADMIN'] });
    const registration = await request(t.http)
      .post('/admin/clients')
      .set('Authorization', `Bearer ${await admin.token()}`)
      .send({ organization: 'org-x', role: 'auditor', scopes: ['system/AuditEvent.rs?site=node-1'], purposes: ['HOPERAT'] });
    expect(registration.status).toBe(400);
    expect(registration.body.issue[0]).toMatchObject({
      code: 'invalid',
      diagnostics: "scopes: 'system/AuditEvent.rs?site=node-1': AuditEvent scopes may be restricted by patient, agent, entity, date, action, outcome, purpose, type, subtype only",
      expression: ['scopes'],
    });
  });
});
