import { Injectable, Module, OnModuleInit } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { Basic } from '@medplum/fhirtypes';
import request from 'supertest';
import type { DataSource } from 'typeorm';
import { FhirError } from '../../src/common/fhir-error';
import { WriteEvent, WriteEvents, WriteListener, WritePhase } from '../../src/fhir/pipeline/write-events';
import { registerTestClient } from '../support/auth';
import { FHIR_JSON } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

const RUN = Date.now().toString(36);
const ORG = `we-${RUN}`;

/** What a listener saw: the event's data (no tx), and whether the row was visible where it looked. */
interface Seen {
  listener: string;
  phase: WritePhase;
  mode: string;
  resourceType: string;
  id: string;
  before?: { versionId: number; deleted: boolean; custodianOrg?: string | null; authorOrg?: string | null; content: boolean };
  afterVersion?: string;
  organization?: string;
  interaction?: string;
  /** The unit of work's AccessContext: the writing interaction's (its principal's organization). */
  sessionOrganization?: string;
  /** pre-commit: the row as seen in the write's transaction; post-commit: from another connection. */
  storedVersion?: number | null;
}
const seen: Seen[] = [];

@Injectable()
class RecordingListeners implements OnModuleInit {
  constructor(
    private readonly events: WriteEvents,
    @InjectDataSource() private readonly db: DataSource,
  ) {}

  onModuleInit(): void {
    const listener = (name: string, phase: WritePhase, order: number, work?: (e: WriteEvent) => Promise<number | null | void>): WriteListener => ({
      name,
      phase,
      order,
      resourceTypes: ['Basic'],
      needsBeforeContent: name === 'pre-b',
      handle: async (e) => {
        const entry: Seen = {
          listener: name,
          phase,
          mode: e.mode,
          resourceType: e.resourceType,
          id: e.id,
          ...(e.before
            ? { before: { versionId: e.before.versionId, deleted: e.before.deleted, custodianOrg: e.before.custodianOrg, authorOrg: e.before.authorOrg, content: !!e.before.resource } }
            : {}),
          afterVersion: e.after?.meta?.versionId,
          organization: e.principal.organization,
          interaction: e.interaction?.kind,
          sessionOrganization: e.session.access?.principal.organization,
        };
        // Recorded before the work: a listener that throws was still called.
        seen.push(entry);
        const storedVersion = work ? await work(e) : undefined;
        if (storedVersion !== undefined) entry.storedVersion = storedVersion;
      },
    });
    const version = async (q: { query: DataSource['query'] }, e: WriteEvent): Promise<number | null> => {
      const rows: { version_id: number }[] = await q.query(`SELECT version_id FROM resource WHERE resource_type = $1 AND id = $2`, [e.resourceType, e.id]);
      return rows[0]?.version_id ?? null;
    };
    // Registered out of order: the declared order decides.
    this.events.register(listener('post-b', 'post-commit', 20, (e) => version(this.db, e)));
    this.events.register(listener('pre-b', 'pre-commit', 20));
    this.events.register(listener('validate-b', 'validate', 20));
    this.events.register(listener('pre-a', 'pre-commit', 10, (e) => version(e.tx, e)));
    this.events.register(
      listener('validate-a', 'validate', 10, async (e) => {
        if ((e.after as Basic | undefined)?.code?.text === 'refuse') throw new FhirError(422, 'business-rule', 'refused by validate-a', ['Basic.code']);
      }),
    );
    // A failing notification is logged; the response and the other listeners are not affected.
    this.events.register(
      listener('post-a', 'post-commit', 10, async () => {
        throw new Error('notification failed');
      }),
    );
  }
}

@Module({ providers: [RecordingListeners] })
class RecordingListenersModule {}

const basic = (text: string, id?: string) => ({ resourceType: 'Basic', ...(id ? { id } : {}), code: { text } });

describe('write events: ordered listeners at validate, pre-commit and post-commit', () => {
  let t: TestApp;
  let send: (m: 'get' | 'post' | 'put' | 'delete', path: string) => request.Test;
  const of = (id: string) => seen.filter((s) => s.id === id).map(({ listener }) => listener);
  const stored = async (text: string): Promise<number> =>
    Number((await t.db.query(`SELECT count(*) AS n FROM resource WHERE resource_type = 'Basic' AND content->'code'->>'text' = $1`, [text]))[0].n);

  beforeAll(async () => {
    t = await createTestApp([RecordingListenersModule]);
    const token = await (await registerTestClient(t, { role: 'hospital', organization: ORG })).token('system/*.cruds', 'TREAT');
    send = (m, path) => request(t.http)[m](path).set('Authorization', `Bearer ${token}`).set('Content-Type', FHIR_JSON);
  }, 120_000);

  afterAll(() => t?.close());
  beforeEach(() => {
    seen.length = 0;
  });

  const ORDER = ['validate-a', 'validate-b', 'pre-a', 'pre-b', 'post-a', 'post-b'];

  it('a single create, update and delete run every phase in order, with who, the interaction, before and after', async () => {
    const created = await send('post', '/fhir/Basic').send(basic(`single-${RUN}`));
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    expect(of(id)).toEqual(ORDER);
    const first = seen.filter((s) => s.id === id);
    for (const s of first) {
      expect(s).toMatchObject({ mode: 'create', resourceType: 'Basic', afterVersion: '1', organization: ORG, interaction: 'create', sessionOrganization: ORG });
    }
    expect(first.every((s) => s.before === undefined)).toBe(true);
    // pre-commit sees its row in the write's transaction; post-commit sees it committed, from another connection.
    expect(first.find((s) => s.listener === 'pre-a')?.storedVersion).toBe(1);
    expect(first.find((s) => s.listener === 'post-b')?.storedVersion).toBe(1);

    seen.length = 0;
    expect((await send('put', `/fhir/Basic/${id}`).send(basic(`single-${RUN}-2`, id))).status).toBe(200);
    expect(of(id)).toEqual(ORDER);
    const before = { versionId: 1, deleted: false, custodianOrg: ORG, authorOrg: ORG };
    expect(seen.find((s) => s.listener === 'pre-a')).toMatchObject({ mode: 'update', interaction: 'update', afterVersion: '2', before: { ...before, content: false }, storedVersion: 2 });
    // Only a listener that asks for it gets the stored content.
    expect(seen.find((s) => s.listener === 'pre-b')?.before).toEqual({ ...before, content: true });

    seen.length = 0;
    expect((await send('delete', `/fhir/Basic/${id}`)).status).toBe(200);
    expect(of(id)).toEqual(ORDER);
    expect(seen.find((s) => s.listener === 'post-b')).toMatchObject({ mode: 'delete', interaction: 'delete', afterVersion: undefined, before: { versionId: 2 }, storedVersion: 3 });
  });

  it('bulk creates of a transaction Bundle fire the same events with the same data as single creates', async () => {
    const single = await send('post', '/fhir/Basic').send(basic(`compare-${RUN}`));
    const singleSeen = seen.filter((s) => s.id === single.body.id).map(({ id: _id, storedVersion: _v, ...rest }) => rest);
    seen.length = 0;
    const bundle = await send('post', '/fhir').send({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [1, 2, 3].map((n) => ({ fullUrl: `urn:uuid:00000000-0000-4000-8000-00000000000${n}`, resource: basic(`bulk-${n}-${RUN}`), request: { method: 'POST', url: 'Basic' } })),
    });
    expect(bundle.status).toBe(200);
    const ids = (bundle.body.entry as { response: { location: string } }[]).map((e) => /Basic\/([^/]+)\/_history/.exec(e.response.location)?.[1]);
    expect(ids).toHaveLength(3);
    for (const id of ids as string[]) {
      expect(of(id)).toEqual(ORDER);
      expect(seen.filter((s) => s.id === id).map(({ id: _id, storedVersion: _v, ...rest }) => rest)).toEqual(singleSeen);
      expect(seen.find((s) => s.id === id && s.listener === 'post-b')?.storedVersion).toBe(1);
    }
    // Queued creates are validated as they are queued, before any is written.
    expect(seen.slice(0, 6).map((s) => s.listener)).toEqual(['validate-a', 'validate-b', 'validate-a', 'validate-b', 'validate-a', 'validate-b']);
  });

  it('a validate listener refusing answers its 4xx and stores nothing, for a single write and in a Bundle', async () => {
    const refused = await send('post', '/fhir/Basic').send(basic('refuse'));
    expect(refused.status).toBe(422);
    expect(refused.body.issue[0]).toMatchObject({ code: 'business-rule', diagnostics: 'refused by validate-a', expression: ['Basic.code'] });
    expect(seen.map((s) => s.listener)).toEqual(['validate-a']);
    const bundle = await send('post', '/fhir').send({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [basic(`kept-${RUN}`), basic('refuse')].map((resource) => ({ resource, request: { method: 'POST', url: 'Basic' } })),
    });
    expect(bundle.status).toBe(422);
    expect(await stored('refuse')).toBe(0);
    expect(await stored(`kept-${RUN}`)).toBe(0);
    expect(seen.some((s) => s.phase !== 'validate')).toBe(false);
  });

  it('post-commit listeners never run for a transaction that rolled back (pre-commit did, in it)', async () => {
    const existing = (await send('post', '/fhir/Basic').send(basic(`existing-${RUN}`))).body.id as string;
    seen.length = 0;
    const bundle = await send('post', '/fhir').send({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { resource: basic(`rolled-back-${RUN}`), request: { method: 'POST', url: 'Basic' } },
        // Runs after the create (R4 order: creates before updates) and fails on its precondition.
        { resource: basic(`existing-${RUN}-2`, existing), request: { method: 'PUT', url: `Basic/${existing}`, ifMatch: 'W/"9"' } },
      ],
    });
    expect(bundle.status).toBe(412);
    expect(await stored(`rolled-back-${RUN}`)).toBe(0);
    const rolledBack = seen.find((s) => s.listener === 'pre-a')!.id;
    expect(of(rolledBack)).toEqual(['validate-a', 'validate-b', 'pre-a', 'pre-b']);
    expect(seen.find((s) => s.listener === 'pre-a')?.storedVersion).toBe(1);
    expect(seen.some((s) => s.phase === 'post-commit')).toBe(false);
  });
});
