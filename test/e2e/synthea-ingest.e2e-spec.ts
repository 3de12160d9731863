import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Bundle } from '@medplum/fhirtypes';
import { FHIR_JSON } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

/**
 * Real Synthea data (../shared/data/synthea, see that folder's README): the two information
 * Bundles (batch, conditional creates) and the three smallest patient Bundles (transactions with
 * conditional references to the information resources) load with zero errors, and the database
 * holds exactly the files' resources. The whole set (76 files) is loaded by `npm run bench:ingest`,
 * which fails on any error or count mismatch.
 */
const SYNTHEA = process.env.SYNTHEA_DIR ?? join(__dirname, '..', '..', '..', 'shared', 'data', 'synthea');
const present = existsSync(SYNTHEA);
// Runs whenever the data folder is present (it is in CI, beside the main checkout); skipped only when
// it is absent, and the skipped tests' names say so: the data is shared, never copied into the repo.
const describeWithData = present ? describe : describe.skip;
const title = present
  ? 'Synthea ingest (real data)'
  : `Synthea ingest (real data) SKIPPED: ${SYNTHEA} is absent (shared public Synthea bundles beside the checkout; or set SYNTHEA_DIR)`;
if (!present) process.stderr.write(`\nSKIPPED synthea-ingest.e2e-spec.ts: ${SYNTHEA} is absent\n\n`);

describeWithData(title, () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t?.close());

  const files = present ? readdirSync(SYNTHEA).filter((f) => f.endsWith('.json')).sort() : [];
  const info = files.filter((f) => f.startsWith('0-'));
  const smallestPatients = files
    .filter((f) => !f.startsWith('0-'))
    .sort((a, b) => statSync(join(SYNTHEA, a)).size - statSync(join(SYNTHEA, b)).size)
    .slice(0, 3);
  const largestPatient = files.filter((f) => !f.startsWith('0-')).sort((a, b) => statSync(join(SYNTHEA, b)).size - statSync(join(SYNTHEA, a)).size)[0];
  const read = (f: string): Bundle => JSON.parse(readFileSync(join(SYNTHEA, f), 'utf8')) as Bundle;

  /** `Type/id` per entry from the response locations. */
  function locations(response: Bundle): string[] {
    return (response.entry ?? []).map((e) => {
      const m = /([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]+)\/_history\/\d+$/.exec(e.response?.location ?? '');
      return m ? `${m[1]}/${m[2]}` : `no location (${e.response?.status})`;
    });
  }

  function countByType(refs: string[]): Record<string, number> {
    const out: Record<string, number> = {};
    for (const r of refs) out[r.split('/')[0]] = (out[r.split('/')[0]] ?? 0) + 1;
    return out;
  }

  /** Stored, not deleted, per type, among the given resources. */
  async function storedByType(refs: string[]): Promise<Record<string, number>> {
    const rows: { resource_type: string; n: number }[] = await t.db.query(
      `SELECT resource_type, count(*)::int AS n FROM resource
        WHERE NOT deleted AND (resource_type, id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
        GROUP BY 1`,
      [refs.map((r) => r.split('/')[0]), refs.map((r) => r.split('/')[1])],
    );
    return Object.fromEntries(rows.map((r) => [r.resource_type, r.n]));
  }

  const fileCounts = (b: Bundle): Record<string, number> => countByType((b.entry ?? []).map((e) => `${e.resource!.resourceType}/x`));

  it('loads both information Bundles (batch, conditional creates) with every entry 201 and the files\' counts stored', async () => {
    expect(info).toHaveLength(2);
    const refs: string[] = [];
    const expected: Record<string, number> = {};
    for (const f of info) {
      const bundle = read(f);
      expect(bundle.type).toBe('batch');
      for (const [type, n] of Object.entries(fileCounts(bundle))) expected[type] = (expected[type] ?? 0) + n;
      const res = await t.api.post('/fhir').set('Content-Type', FHIR_JSON).send(bundle);
      expect(res.status).toBe(200);
      const statuses = (res.body as Bundle).entry!.map((e) => e.response!.status);
      expect(statuses.filter((s) => s !== '201 Created')).toEqual([]);
      refs.push(...locations(res.body));
    }
    expect(expected).toEqual({ Organization: 194, Location: 194, Practitioner: 195, PractitionerRole: 195 });
    expect(new Set(refs).size).toBe(778);
    expect(await storedByType(refs)).toEqual(expected);
  });

  it('loads the three smallest patient Bundles (transactions with conditional references) with the files\' counts stored', async () => {
    for (const f of smallestPatients) {
      const bundle = read(f);
      expect(bundle.type).toBe('transaction');
      const res = await t.api.post('/fhir').set('Content-Type', FHIR_JSON).send(bundle);
      expect({ file: f, status: res.status, outcome: res.status === 200 ? undefined : res.body }).toEqual({ file: f, status: 200, outcome: undefined });
      const refs = locations(res.body);
      expect(refs.filter((r) => r.startsWith('no location'))).toEqual([]);
      expect(new Set(refs).size).toBe(bundle.entry!.length);
      expect(await storedByType(refs)).toEqual(fileCounts(bundle));

      // Conditional references were resolved to the stored information resources; urn:uuid ones to this Bundle's.
      const patientId = refs.find((r) => r.startsWith('Patient/'))!.split('/')[1];
      const encounters: { content: { subject: { reference: string }; serviceProvider?: { reference: string }; participant?: { individual?: { reference: string } }[] } }[] =
        await t.db.query(`SELECT content FROM resource WHERE resource_type = 'Encounter' AND $1 = ANY(compartments)`, [patientId]);
      expect(encounters.length).toBe(fileCounts(bundle).Encounter);
      for (const { content } of encounters) {
        expect(content.subject.reference).toBe(`Patient/${patientId}`);
        expect(content.serviceProvider?.reference).toMatch(/^Organization\/[A-Za-z0-9\-.]+$/);
        for (const p of content.participant ?? []) expect(p.individual?.reference).toMatch(/^Practitioner\/[A-Za-z0-9\-.]+$/);
      }
      const targets = encounters.map((e) => e.content.serviceProvider!.reference);
      const [{ n }] = await t.db.query(
        `SELECT count(*)::int AS n FROM resource WHERE resource_type = 'Organization' AND ('Organization/' || id) = ANY($1::text[])`,
        [[...new Set(targets)]],
      );
      expect(n).toBe(new Set(targets).size);
    }
  });
  it('loads the largest patient Bundle (about 3,200 entries, 6.4 MB) under the default per-resource cost limits (docs/security.md)', async () => {
    const bundle = read(largestPatient);
    expect(bundle.entry!.length).toBeGreaterThan(3_000);
    const res = await t.api.post('/fhir').set('Content-Type', FHIR_JSON).send(bundle);
    expect({ status: res.status, outcome: res.status === 200 ? undefined : res.body }).toEqual({ status: 200, outcome: undefined });
    const refs = locations(res.body);
    expect(refs.filter((r) => r.startsWith('no location'))).toEqual([]);
    expect(await storedByType(refs)).toEqual(fileCounts(bundle));
  }, 300_000);
});
