import { Injectable, Module, OnModuleInit } from '@nestjs/common';
import type { Observation, Task } from '@medplum/fhirtypes';
import request from 'supertest';
import type { AuditRecord } from '../../src/fhir/pipeline/audit-record';
import { Logger } from '@nestjs/common';
import type { QueryRunner } from 'typeorm';
import { ResourceCustodian1732402300000 } from '../../migrations/1732402300000-resource-custodian';
import type { WriteVerdict } from '../../src/fhir/pipeline/write-decision';
import { WritePolicies, WritePolicy, WriteProposal } from '../../src/fhir/pipeline/write-policy';
import { captureAuditRecords } from '../support/audit';
import { registerTestClient } from '../support/auth';
import { FHIR_JSON, hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';
import { consentResource } from '../support/consent';

const RUN = Date.now().toString(36);
const ORG_A = `wp-a-${RUN}`; // custodian of everything created here
const ORG_B = `wp-b-${RUN}`; // named as Task owner / Observation performer
const ORG_C = `wp-c-${RUN}`; // an organization with no part in it

/**
 * A module's policy, as referrals will register one: the organization a resource names (Task.owner,
 * Observation.performer) may update it. Test-only; it touches no core code.
 */
@Injectable()
class NamedOrganizationPolicy implements WritePolicy, OnModuleInit {
  readonly name = 'test-named-organization';
  readonly resourceTypes = ['Task', 'Observation'];
  constructor(private readonly policies: WritePolicies) {}

  onModuleInit(): void {
    this.policies.register(this);
  }

  decide(p: WriteProposal): WriteVerdict | undefined {
    const named = (r: unknown): string[] =>
      r && (r as Task).resourceType === 'Task'
        ? [(r as Task).owner?.reference ?? '']
        : ((r as Observation | undefined)?.performer ?? []).map((x) => x.reference ?? '');
    if (p.mode !== 'update' || !p.before?.resource || !p.after) return undefined;
    const me = `Organization/${p.principal.organization}`;
    // Both before and after: the named organization may not rename itself out of or into the role.
    if (named(p.before.resource).includes(me) && named(p.after).includes(me)) return { permit: true, reason: `${p.resourceType}: ${me} is named` };
    return undefined;
  }
}

/** A module's policy that refuses: nobody, the custodian included, may cancel a Task here. */
@Injectable()
class NoCancelPolicy implements WritePolicy, OnModuleInit {
  readonly name = 'test-no-cancel';
  readonly resourceTypes = ['Task'];
  constructor(private readonly policies: WritePolicies) {}

  onModuleInit(): void {
    this.policies.register(this);
  }

  decide(p: WriteProposal): WriteVerdict | undefined {
    return (p.after as Task | undefined)?.status === 'cancelled' ? { permit: false, reason: 'Task.status cancelled is not a transition of this exchange' } : undefined;
  }
}

@Module({ providers: [NamedOrganizationPolicy, NoCancelPolicy] })
class NamedOrganizationPolicyModule {}

type Send = (m: 'get' | 'post' | 'put', path: string) => request.Test;

describe('write policies and the custodian organization', () => {
  let t: TestApp;
  let a: Send;
  let b: Send;
  let c: Send;
  let admin: Send;
  let records: AuditRecord[];

  const client = async (organization: string): Promise<Send> => {
    const token = await (await registerTestClient(t, { role: 'hospital', organization })).token('system/*.cruds', 'TREAT');
    return (m, path) => request(t.http)[m](path).set('Authorization', `Bearer ${token}`).set('Content-Type', FHIR_JSON);
  };
  const rows = async (type: string, id: string) =>
    t.db.query(
      `SELECT version_id, author_org, custodian_org FROM resource_history WHERE resource_type = $1 AND id = $2
       UNION ALL SELECT 0, author_org, custodian_org FROM resource WHERE resource_type = $1 AND id = $2 ORDER BY 1`,
      [type, id],
    );
  const writeRecord = (type: string, id: string): AuditRecord | undefined =>
    records.filter((r) => r.resourceType === type && r.entities.some((e) => e.reference === `${type}/${id}`) && r.kind !== 'read').at(-1);
  const task = (owner: string, status = 'requested') => ({
    resourceType: 'Task',
    status,
    intent: 'order',
    owner: { reference: `Organization/${owner}` },
  });

  beforeAll(async () => {
    t = await createTestApp([NamedOrganizationPolicyModule]);
    records = captureAuditRecords(t.app);
    [a, b, c] = [await client(ORG_A), await client(ORG_B), await client(ORG_C)];
    const adminToken = await (await registerTestClient(t, { role: 'admin', organization: ORG_A, scopes: ['system/Organization.cruds'], purposes: ['HSYSADMIN'] })).token();
    admin = (m, path) => request(t.http)[m](path).set('Authorization', `Bearer ${adminToken}`).set('Content-Type', FHIR_JSON);
    for (const org of [ORG_A, ORG_B]) {
      expect((await admin('put', `/fhir/Organization/${org}`).send({ resourceType: 'Organization', id: org, name: org })).status).toBe(201);
    }
  }, 120_000);

  afterAll(() => t?.close());

  it('a registered policy lets the named non-custodian organization update a Task; audited with its name and reason; the custodian stays', async () => {
    const created = await a('post', '/fhir/Task').send(task(ORG_B));
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    expect(writeRecord('Task', id)?.accessBasis).toContain(`write-policy: custodian-organization: create: Organization/${ORG_A} becomes the custodian`);

    const updated = await b('put', `/fhir/Task/${id}`).send({ ...task(ORG_B, 'accepted'), id });
    expect(updated.status).toBe(200);
    expect(updated.body.meta.versionId).toBe('2');
    expect(writeRecord('Task', id)?.accessBasis).toContain(`write-policy: test-named-organization: Task: Organization/${ORG_B} is named`);
    // Written-by changes with every version; the custodian does not.
    expect(await rows('Task', id)).toEqual([
      { version_id: 0, author_org: ORG_B, custodian_org: ORG_A },
      { version_id: 1, author_org: ORG_A, custodian_org: ORG_A },
      { version_id: 2, author_org: ORG_B, custodian_org: ORG_A },
    ]);

    // The custodian still writes, by the default policy (B's write took nothing over).
    const byCustodian = await a('put', `/fhir/Task/${id}`).send({ ...task(ORG_B, 'in-progress'), id });
    expect(byCustodian.status).toBe(200);
    expect(writeRecord('Task', id)?.accessBasis).toContain(`write-policy: custodian-organization: Organization/${ORG_A} is the custodian`);
    expect((await rows('Task', id))[0]).toEqual({ version_id: 0, author_org: ORG_A, custodian_org: ORG_A });
  });

  it('an organization no policy permits gets the one 403, audited with the deciding policy; nothing is stored', async () => {
    const id = (await a('post', '/fhir/Task').send(task(ORG_B))).body.id as string;
    const refused = await c('put', `/fhir/Task/${id}`).send({ ...task(ORG_B, 'accepted'), id });
    expect(refused.status).toBe(403);
    expect(refused.body.issue[0].code).toBe('forbidden');
    const record = records.filter((r) => r.resourceType === 'Task' && r.outcome === 'failure').at(-1);
    expect(record?.status).toBe(403);
    expect(record?.accessBasis).toContain('write-policy: custodian-organization: not the custodian organization, or hidden or missing');
    // The policy needs the organization named before and after: B cannot rename the owner to C.
    expect((await b('put', `/fhir/Task/${id}`).send({ ...task(ORG_C), id })).status).toBe(403);
    expect(await rows('Task', id)).toEqual([
      { version_id: 0, author_org: ORG_A, custodian_org: ORG_A },
      { version_id: 1, author_org: ORG_A, custodian_org: ORG_A },
    ]);
  });

  it("consent's own-data access follows the custodian, not the last writer; $transfer-custodian moves it, audited", async () => {
    const patient = (await a('post', '/fhir/Patient').send(hiePatient({ name: [{ family: `Custodian${RUN}` }] }))).body.id as string;
    const observation = {
      resourceType: 'Observation',
      status: 'preliminary',
      code: { text: 'custodian test' },
      subject: { reference: `Patient/${patient}` },
      performer: [{ reference: `Organization/${ORG_B}` }],
    };
    const obs = (await a('post', '/fhir/Observation').send(observation)).body.id as string;
    // B (the performer) writes the last version under the module policy, while the patient shares.
    expect((await b('put', `/fhir/Observation/${obs}`).send({ ...observation, id: obs, status: 'final' })).status).toBe(200);
    // Then the patient denies every organization (custodians keep their own data).
    const consent = await a('post', '/fhir/Consent').send(consentResource(patient));
    expect(consent.status).toBe(201);
    records.length = 0;
    expect((await a('get', `/fhir/Observation/${obs}`)).status).toBe(200);
    // The audit record explains the read by the custodian's own-data access.
    expect(records.find((r) => r.kind === 'read')?.accessBasis.some((b) => b.endsWith(`Observation/${obs}: own organization (custodian)`))).toBe(true);
    // The last writer is not the custodian: no own-data bypass, and no write (it cannot read it).
    expect((await b('get', `/fhir/Observation/${obs}`)).status).toBe(404);
    expect((await b('put', `/fhir/Observation/${obs}`).send({ ...observation, id: obs, status: 'amended' })).status).toBe(403);
    const search = await b('get', `/fhir/Observation?subject=Patient/${patient}`);
    expect(search.body.total ?? search.body.entry?.length ?? 0).toBe(0);

    // Only an HIE admin transfers custody; hospitals (even the custodian) may not.
    const to = (org: string) => ({ resourceType: 'Parameters', parameter: [{ name: 'organization', valueReference: { reference: `Organization/${org}` } }] });
    expect((await a('post', `/fhir/Observation/${obs}/$transfer-custodian`).send(to(ORG_B))).status).toBe(403);
    const missing = await admin('post', `/fhir/Observation/${obs}/$transfer-custodian`).send(to(`nowhere-${RUN}`));
    expect(missing.status).toBe(422);
    expect(missing.body.issue[0].code).toBe('not-found');
    const bad = await admin('post', `/fhir/Observation/${obs}/$transfer-custodian`).send({ resourceType: 'Parameters', parameter: [{ name: 'organization', valueString: ORG_B }] });
    expect(bad.status).toBe(400);
    expect(bad.body.issue[0].expression).toEqual(['organization']);
    expect((await admin('post', `/fhir/Observation/nope-${RUN}/$transfer-custodian`).send(to(ORG_B))).status).toBe(404);
    expect((await rows('Observation', obs)).map((r: { custodian_org: string }) => r.custodian_org)).toEqual([ORG_A, ORG_A, ORG_A]);

    records.length = 0;
    const moved = await admin('post', `/fhir/Observation/${obs}/$transfer-custodian`).send(to(ORG_B));
    expect(moved.status).toBe(200);
    expect(moved.body.parameter).toEqual([
      { name: 'custodian', valueReference: { reference: `Organization/${ORG_B}` } },
      { name: 'previous', valueReference: { reference: `Organization/${ORG_A}` } },
    ]);
    const audited = records.find((r) => r.kind === 'operation' && r.subtype === 'transfer-custodian');
    expect(audited).toMatchObject({ action: 'U', outcome: 'success', status: 200, patients: [patient] });
    expect(audited?.entities).toEqual([{ reference: `Observation/${obs}`, versionId: '2', patients: [patient] }]);
    expect(audited?.accessBasis).toContain(`write-policy: custodian-transfer: admin transferred custody from Organization/${ORG_A} to Organization/${ORG_B}`);
    expect(records.some((r) => r.kind === 'system-access' && r.subtype === 'custodian-transfer')).toBe(true);

    // No new version; every version row and the current row carry the new custodian.
    expect(await rows('Observation', obs)).toEqual([
      { version_id: 0, author_org: ORG_B, custodian_org: ORG_B },
      { version_id: 1, author_org: ORG_A, custodian_org: ORG_B },
      { version_id: 2, author_org: ORG_B, custodian_org: ORG_B },
    ]);
    expect((await b('get', `/fhir/Observation/${obs}`)).status).toBe(200);
    expect((await b('get', `/fhir/Observation/${obs}/_history/1`)).status).toBe(200);
    expect((await a('get', `/fhir/Observation/${obs}`)).status).toBe(404);
    expect((await b('put', `/fhir/Observation/${obs}`).send({ ...observation, id: obs, status: 'amended' })).status).toBe(200);
  });

  it("a registered policy's deny wins over the custodian's right, and is audited with its reason", async () => {
    const id = (await a('post', '/fhir/Task').send(task(ORG_B))).body.id as string;
    const refused = await a('put', `/fhir/Task/${id}`).send({ ...task(ORG_B, 'cancelled'), id });
    expect(refused.status).toBe(403);
    expect(refused.body.issue[0].code).toBe('forbidden');
    const record = records.filter((r) => r.resourceType === 'Task' && r.outcome === 'failure').at(-1);
    expect(record?.accessBasis).toContain('write-policy: test-no-cancel: Task.status cancelled is not a transition of this exchange');
    expect((await rows('Task', id)).map((r: { version_id: number }) => r.version_id)).toEqual([0, 1]);
  });

  it('the migration backfills the custodian from each resource’s first version and logs how many rows differ', async () => {
    // A resource last written by another organization than the one that created it.
    const id = (await a('post', '/fhir/Task').send(task(ORG_B))).body.id as string;
    expect((await b('put', `/fhir/Task/${id}`).send({ ...task(ORG_B, 'accepted'), id })).status).toBe(200);
    const runner = t.db.createQueryRunner();
    await runner.startTransaction();
    const logged = jest.spyOn(Logger.prototype, 'log').mockImplementation(() => undefined);
    try {
      // As before the migration: no custodian anywhere (the current row's author_org is the last writer).
      await runner.query(`UPDATE resource SET custodian_org = NULL`);
      await runner.query(`UPDATE resource_history SET custodian_org = NULL`);
      const [{ n: differ }] = await runner.query(
        `SELECT count(*) AS n FROM resource r
          WHERE r.author_org IS DISTINCT FROM (SELECT h.author_org FROM resource_history h WHERE h.resource_type = r.resource_type AND h.id = r.id ORDER BY h.version_id LIMIT 1)`,
      );
      expect(Number(differ)).toBeGreaterThanOrEqual(2);
      // Only the data statements: the columns exist already.
      const dataOnly = { query: (sql: string, p?: unknown[]) => (/^\s*ALTER TABLE/.test(sql) ? Promise.resolve() : runner.query(sql, p)) } as unknown as QueryRunner;
      await new ResourceCustodian1732402300000().up(dataOnly);
      expect(await runner.query(`SELECT version_id, custodian_org FROM resource_history WHERE resource_type = 'Task' AND id = $1 ORDER BY 1`, [id])).toEqual([
        { version_id: 1, custodian_org: ORG_A },
        { version_id: 2, custodian_org: ORG_A },
      ]);
      expect(await runner.query(`SELECT author_org, custodian_org FROM resource WHERE resource_type = 'Task' AND id = $1`, [id])).toEqual([{ author_org: ORG_B, custodian_org: ORG_A }]);
      const [{ n: missing }] = await runner.query(`SELECT count(*) AS n FROM resource WHERE custodian_org IS NULL AND author_org IS NOT NULL`);
      expect(Number(missing)).toBe(0);
      expect(logged).toHaveBeenCalledWith(`custodian backfilled from first versions; ${differ} resource(s) were last written by another organization than their custodian`);
    } finally {
      logged.mockRestore();
      await runner.rollbackTransaction();
      await runner.release();
    }
  });
});
