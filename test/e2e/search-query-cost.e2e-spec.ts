import { request as httpRequest } from 'node:http';
import type { QueryRunner } from 'typeorm';
import { registerTestClient } from '../support/auth';
import { FHIR_JSON, hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

/** Statements of this database other than the asking one that are still running. */
async function runningStatements(t: TestApp): Promise<string[]> {
  const rows: { query: string }[] = await t.db.query(
    `SELECT query FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'active'`,
  );
  return rows.map((r) => r.query.slice(0, 100));
}

function expectTooCostly(res: { status: number; body: { resourceType: string; issue: { code: string; diagnostics: string; expression?: string[] }[] } }, says: RegExp, expression: string[]): void {
  expect(res.status).toBe(400);
  expect(res.body.resourceType).toBe('OperationOutcome');
  expect(res.body.issue[0].code).toBe('too-costly');
  expect(res.body.issue[0].diagnostics).toMatch(says);
  expect(res.body.issue[0].expression).toEqual(expression);
}

/** Issue 9, item 2: one request cannot hold the database; every limit is refused by name. */
describe('search query cost', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
    const patients = Array.from({ length: 50 }, (_, i) => ({
      resource: hiePatient({ identifier: [{ system: 'http://cost.example.org/mrn', value: `cost-${i}` }], name: [{ family: `Family a0${i}` }] }),
      request: { method: 'POST', url: 'Patient' },
    }));
    const res = await t.api.post('/fhir').set('Content-Type', FHIR_JSON).send({ resourceType: 'Bundle', type: 'transaction', entry: patients });
    expect(res.status).toBe(200);
  });
  afterAll(() => t.close());

  it('answers the probe searches (200 :contains, 150 _has, 1,000 _has by POST) within 3 s and leaves nothing running', async () => {
    const probes: [() => ReturnType<TestApp['api']['get']>, string][] = [
      [() => t.api.get(`/fhir/Patient?${Array.from({ length: 200 }, (_, i) => `name:contains=a${i % 10}`).join('&')}`), 'name:contains'],
      [() => t.api.get(`/fhir/Patient?${Array.from({ length: 150 }, (_, i) => `_has:Observation:subject:code=c${i}`).join('&')}`), '_has:Observation:subject:code'],
      [
        () =>
          t.api
            .post('/fhir/Patient/_search')
            .type('form')
            .send(Array.from({ length: 1000 }, (_, i) => `_has:Observation:subject:code=code${i}`).join('&')),
        '_has:Observation:subject:code',
      ],
    ];
    for (const [probe, parameter] of probes) {
      const started = Date.now();
      const res = await probe();
      expect(Date.now() - started).toBeLessThan(3000);
      expectTooCostly(res, /at most 20 search parameter clauses per request/, [parameter]);
    }
    expect(await runningStatements(t)).toEqual([]);
  });

  it('answers searches at the clause limit within 3 s, each with exactly its matches', async () => {
    // One match for each of the other two clauses: an Observation coded c0 on Patient cost-7, and a
    // Patient (no "a0" in its name) managed by an Organization named "Cost clinic a0".
    const target = (await t.api.get('/fhir/Patient?identifier=http://cost.example.org/mrn|cost-7')).body.entry[0].resource.id as string;
    const observation = await t.api
      .post('/fhir/Observation')
      .set('Content-Type', FHIR_JSON)
      .send({ resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'http://cost.example.org/code', code: 'c0' }] }, subject: { reference: `Patient/${target}` } });
    expect(observation.status).toBe(201);
    const org = await t.api.post('/fhir/Organization').set('Content-Type', FHIR_JSON).send({ resourceType: 'Organization', name: 'Cost clinic a0' });
    expect(org.status).toBe(201);
    const managed = await t.api
      .post('/fhir/Patient')
      .set('Content-Type', FHIR_JSON)
      .send(hiePatient({ identifier: [{ system: 'http://cost.example.org/mrn', value: 'cost-managed' }], name: [{ family: 'Managed' }], managingOrganization: { reference: `Organization/${org.body.id}` } }));
    expect(managed.status).toBe(201);

    const families = (res: { body: { entry?: { resource: { name: { family: string }[] } }[] } }) => (res.body.entry ?? []).map((e) => e.resource.name[0].family).sort();
    const ids = (res: { body: { entry?: { resource: { id: string } }[] } }) => (res.body.entry ?? []).map((e) => e.resource.id);
    const expected: [clause: string, check: (res: Awaited<ReturnType<TestApp['api']['get']>>) => void][] = [
      ['name:contains=a0', (res) => expect(families(res)).toEqual(Array.from({ length: 50 }, (_, i) => `Family a0${i}`).sort())],
      ['_has:Observation:subject:code=c0', (res) => expect(ids(res)).toEqual([target])],
      ['organization.name:contains=a0', (res) => expect(ids(res)).toEqual([managed.body.id])],
    ];
    for (const [clause, check] of expected) {
      const started = Date.now();
      const res = await t.api.get(`/fhir/Patient?${Array.from({ length: 20 }, () => clause).join('&')}&_count=100`);
      expect(Date.now() - started).toBeLessThan(3000);
      expect([clause, res.status]).toEqual([clause, 200]);
      check(res);
    }
  });

  it('refuses more than 100 OR values in one parameter, naming it', async () => {
    const ok = await t.api.get(`/fhir/Patient?identifier=${Array.from({ length: 100 }, (_, i) => `v${i}`).join(',')}`);
    expect(ok.status).toBe(200);
    const res = await t.api.get(`/fhir/Patient?identifier=${Array.from({ length: 101 }, (_, i) => `v${i}`).join(',')}`);
    expectTooCostly(res, /identifier has 101 values: at most 100 OR values per parameter/, ['identifier']);
  });

  it('refuses chains deeper than 3 links and _has nested deeper than 2', async () => {
    expect((await t.api.get('/fhir/Observation?subject:Patient.organization.partof.name=x')).status).toBe(200);
    const chain = await t.api.get('/fhir/Observation?subject:Patient.organization.partof.partof.name=x');
    expectTooCostly(chain, /at most 3 chained references/, ['subject:Patient.organization.partof.partof.name']);
    expect((await t.api.get('/fhir/Patient?_has:Observation:subject:_has:Observation:has-member:_id=x')).status).toBe(200);
    const has = await t.api.get('/fhir/Patient?_has:Observation:subject:_has:Observation:has-member:_has:Observation:derived-from:_id=x');
    expectTooCostly(has, /at most 2 nested _has/, ['_has:Observation:subject:_has:Observation:has-member:_has:Observation:derived-from:_id']);
  });

  it('refuses more than 10 _include/_revinclude parameters and more than 5 _sort keys', async () => {
    const includes = Array.from({ length: 11 }, () => '_include=Patient:organization').join('&');
    expectTooCostly(await t.api.get(`/fhir/Patient?${includes}`), /at most 10 _include and _revinclude parameters/, ['_include']);
    const sort = await t.api.get('/fhir/Patient?_sort=name,birthdate,gender,_id,_lastUpdated,family');
    expectTooCostly(sort, /at most 5 sort keys/, ['_sort']);
  });

  it('refuses a batch of more than 10,000 entries before running any', async () => {
    const entry = Array.from({ length: 10_001 }, () => ({ request: { method: 'GET', url: 'Patient/none' } }));
    const started = Date.now();
    const res = await t.api.post('/fhir').set('Content-Type', FHIR_JSON).send({ resourceType: 'Bundle', type: 'batch', entry });
    expect(Date.now() - started).toBeLessThan(3000);
    expectTooCostly(res, /10001 entries: at most 10000 per batch or transaction/, ['Bundle.entry']);
  });
});

describe('statement timeout', () => {
  let t: TestApp;
  const saved = { timeout: process.env.DB_STATEMENT_TIMEOUT_MS, pool: process.env.DB_POOL_SIZE };
  beforeAll(async () => {
    process.env.DB_STATEMENT_TIMEOUT_MS = '400';
    process.env.DB_POOL_SIZE = '4';
    t = await createTestApp();
  });
  afterAll(async () => {
    for (const [name, value] of [['DB_STATEMENT_TIMEOUT_MS', saved.timeout], ['DB_POOL_SIZE', saved.pool]] as const) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
    await t.close();
  });

  it('applies DB_STATEMENT_TIMEOUT_MS to the app connections', async () => {
    expect(await t.db.query('SHOW statement_timeout')).toEqual([{ statement_timeout: '400ms' }]);
  });

  it('answers 503 too-costly when a statement runs past the timeout, and cancels it', async () => {
    // A lock held elsewhere makes the search wait: the timeout counts the wait like work.
    const blocker: QueryRunner = t.db.createQueryRunner();
    await blocker.connect();
    await blocker.startTransaction();
    try {
      await blocker.query('LOCK TABLE resource IN ACCESS EXCLUSIVE MODE');
      const started = Date.now();
      const res = await t.api.get('/fhir/Patient?name=timeout');
      expect(Date.now() - started).toBeLessThan(3000);
      expect(res.status).toBe(503);
      expect(res.body.resourceType).toBe('OperationOutcome');
      expect(res.body.issue[0].code).toBe('too-costly');
      expect(res.body.issue[0].diagnostics).toMatch(/longer than the database statement limit \(DB_STATEMENT_TIMEOUT_MS\)/);
    } finally {
      await blocker.rollbackTransaction();
      await blocker.release();
    }
    expect(await runningStatements(t)).toEqual([]);
    expect((await t.api.get('/fhir/Patient?name=timeout')).status).toBe(200);
  });
});

/** Issue 9, item 2: a client that goes away takes its running statement with it. */
describe('cancellation when the client disconnects', () => {
  let t: TestApp;
  let port: number;
  let token: string;
  beforeAll(async () => {
    t = await createTestApp();
    await new Promise<void>((resolve) => t.http.listen(0, '127.0.0.1', resolve));
    port = (t.http.address() as { port: number }).port;
    token = await (await registerTestClient(t, { role: 'hospital' })).token();
  });
  afterAll(() => t.close());

  it('cancels the statement of a request whose client closed the connection', async () => {
    const blocker: QueryRunner = t.db.createQueryRunner();
    await blocker.connect();
    await blocker.startTransaction();
    const waiting = async (): Promise<string[]> =>
      (
        await t.db.query(
          `SELECT query FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'active' AND query LIKE '%search_string%'`,
        )
      ).map((r: { query: string }) => r.query.slice(0, 60));
    try {
      await blocker.query('LOCK TABLE resource IN ACCESS EXCLUSIVE MODE');
      // No statement timeout here (default 30 s): only the cancellation can end the waiting search.
      const inFlight = httpRequest({ host: '127.0.0.1', port, path: '/fhir/Patient?name=gone-away', headers: { Authorization: `Bearer ${token}` } });
      inFlight.on('error', () => undefined);
      inFlight.end();
      for (let i = 0; i < 50 && (await waiting()).length === 0; i++) await new Promise((r) => setTimeout(r, 50));
      expect((await waiting()).length).toBe(1);
      inFlight.destroy();
      let left = await waiting();
      for (let i = 0; i < 40 && left.length; i++) {
        await new Promise((r) => setTimeout(r, 50));
        left = await waiting();
      }
      expect(left).toEqual([]);
    } finally {
      await blocker.rollbackTransaction();
      await blocker.release();
    }
  });
});
