import { randomUUID } from 'node:crypto';
import request from 'supertest';
import type { AuditEvent, Bundle } from '@medplum/fhirtypes';
import type { AuditRecord } from '../../src/fhir/pipeline/audit-record';
import { toAuditEventRow } from '../../src/audit/audit-event.builder';
import { AuditTrailWriter } from '../../src/audit/audit-trail.writer';
import { registerTestClient } from '../support/auth';
import { createTestApp, TestApp } from '../support/test-app';

/**
 * Order and completeness of the trail once it holds more than a few powers of ten of records: the
 * auditor's paged search in both directions and the NDJSON export (docs/audit.md). The sequence
 * number was once sorted as text (`99` after `439`), which skipped records on every next page and
 * dropped them from the export without an error.
 */
describe('audit trail order past 10,000 records', () => {
  let t: TestApp;
  let auditorToken: string;
  /** Seeded records, one millisecond apart on a day of their own, in chain (= append) order. */
  const SEEDED = 10_500;
  const DAY = '2021-03-01';
  const seedClient = `seed-${randomUUID().slice(0, 8)}`;
  let seededIds: string[];

  beforeAll(async () => {
    t = await createTestApp();
    const auditor = await registerTestClient(t, { role: 'auditor', scopes: ['system/AuditEvent.rs'], purposes: ['HOPERAT'] });
    auditorToken = await auditor.token();
    // Through the group-commit writer, in bulk (batches of AUDIT_GROUP_COMMIT_MAX), not over HTTP.
    const writer = t.app.get(AuditTrailWriter);
    const start = Date.parse(`${DAY}T00:00:00Z`);
    const rows = Array.from({ length: SEEDED }, (_, n) => {
      const record: AuditRecord = {
        kind: 'read',
        action: 'R',
        recorded: new Date(start + n).toISOString(),
        principal: { kind: 'client', clientId: seedClient, organization: 'org-seed', role: 'hospital', scopes: [], purposeOfUse: 'TREAT' },
        resourceType: 'Patient',
        path: `/Patient/p${n}`,
        outcome: 'success',
        status: 200,
        entities: [{ reference: `Patient/p${n}`, versionId: '1', patients: [`p${n}`] }],
        patients: [`p${n}`],
        accessBasis: ['scope: system/*.rs'],
        purposeOfUse: 'TREAT',
        durationMs: 1,
      };
      return toAuditEventRow(record, 'seed:1');
    });
    await Promise.all(rows.map((r) => writer.append(r)));
    seededIds = rows.map((r) => r.id);
  });
  afterAll(() => t.close());

  const get = (path: string) => request(t.http).get(path).set('Authorization', `Bearer ${auditorToken}`);
  const relative = (url: string): string => new URL(url).pathname + new URL(url).search;

  /** Follows `next` links to the end; every id of every page, in page order. */
  async function everyPage(query: string): Promise<{ ids: string[]; pages: number }> {
    const ids: string[] = [];
    let pages = 0;
    let path: string | undefined = `/fhir/AuditEvent?${query}`;
    while (path) {
      const res = await get(path);
      expect(res.status).toBe(200);
      const bundle = res.body as Bundle<AuditEvent>;
      ids.push(...(bundle.entry ?? []).map((e) => e.resource!.id!));
      pages++;
      const next = bundle.link?.find((l) => l.relation === 'next')?.url;
      path = next ? relative(next) : undefined;
      expect(pages).toBeLessThanOrEqual(SEEDED / 1000 + 2);
    }
    return { ids, pages };
  }

  it('stores the seeded records contiguously in append order, past several powers of ten', async () => {
    // Aliased apart from the column: `seq::text AS seq … ORDER BY seq` would sort the text.
    const rows: { id: string; position: string }[] = await t.db.query(
      `SELECT id::text AS id, seq::text AS position FROM audit_event WHERE agent @> ARRAY[$1::text] ORDER BY seq`,
      [seedClient],
    );
    expect(rows.map((r) => r.id)).toEqual(seededIds);
    expect(BigInt(rows[SEEDED - 1].position) - BigInt(rows[0].position)).toBe(BigInt(SEEDED - 1));
    expect(BigInt(rows[SEEDED - 1].position)).toBeGreaterThan(10_000n);
  });

  it('pages newest first (the default, and _sort=-date) through every record exactly once', async () => {
    const newestFirst = [...seededIds].reverse();
    for (const query of [`date=${DAY}&_count=1000`, `date=${DAY}&_count=1000&_sort=-date`, `agent=${seedClient}&_count=1000`]) {
      const { ids, pages } = await everyPage(query);
      expect({ query, count: ids.length, pages }).toEqual({ query, count: SEEDED, pages: 11 });
      expect(ids).toEqual(newestFirst);
    }
  });

  it('pages oldest first (_sort=date) through every record exactly once', async () => {
    const { ids, pages } = await everyPage(`date=${DAY}&_count=1000&_sort=date`);
    expect({ count: ids.length, pages }).toEqual({ count: SEEDED, pages: 11 });
    expect(ids).toEqual(seededIds);
  });

  it('the default view (no date, no filter) opens on the newest records of the whole log', async () => {
    const [{ ids: newest }] = (await t.db.query(`SELECT array_agg(id::text ORDER BY seq DESC) AS ids FROM (SELECT id, seq FROM audit_event ORDER BY seq DESC LIMIT 20) x`)) as { ids: string[] }[];
    const res = await get('/fhir/AuditEvent?_sort=-date');
    expect(res.status).toBe(200);
    expect((res.body as Bundle<AuditEvent>).entry!.map((e) => e.resource!.id)).toEqual(newest);
  });

  it('exports every record of the range, oldest first, and states count and first and last chain positions', async () => {
    const res = await get(`/audit/export?since=${DAY}&until=2021-03-02`);
    expect(res.status).toBe(200);
    const lines = res.text.trim().split('\n').map((l) => JSON.parse(l) as AuditEvent);
    expect(lines).toHaveLength(SEEDED);
    expect(lines.map((e) => e.id)).toEqual(seededIds);

    const [stored] = (await t.db.query(
      `SELECT count(*)::int AS n, min(seq)::text AS first, max(seq)::text AS last FROM audit_event WHERE recorded >= $1 AND recorded < $2`,
      [`${DAY}T00:00:00Z`, '2021-03-02T00:00:00Z'],
    )) as { n: number; first: string; last: string }[];
    const [last] = (await t.db.query(`SELECT encode(hash, 'hex') AS hash FROM audit_event WHERE seq = $1::bigint`, [stored.last])) as { hash: string }[];
    expect(stored.n).toBe(SEEDED);
    expect({
      count: res.headers['x-audit-record-count'],
      first: res.headers['x-audit-first-seq'],
      last: res.headers['x-audit-last-seq'],
      hash: res.headers['x-audit-last-hash'],
    }).toEqual({ count: String(SEEDED), first: stored.first, last: stored.last, hash: last.hash });

    // What the headers name verifies as a chain ($verify-chain over the same positions).
    const verified = await get(`/fhir/$verify-chain?from=${stored.first}&to=${stored.last}`);
    expect(verified.status).toBe(200);
    const p = verified.body.parameter as { name: string; valueBoolean?: boolean; valueInteger?: number }[];
    expect(p.find((x) => x.name === 'verified')?.valueBoolean).toBe(true);
    expect(p.find((x) => x.name === 'checked')?.valueInteger).toBe(SEEDED);
  });

  it('an empty range exports no line and a count of 0', async () => {
    const res = await get('/audit/export?since=2019-01-01&until=2019-01-02');
    expect(res.status).toBe(200);
    expect(res.text).toBe('');
    expect(res.headers['x-audit-record-count']).toBe('0');
    expect(res.headers['x-audit-first-seq']).toBeUndefined();
    expect(res.headers['x-audit-last-seq']).toBeUndefined();
  });
});
