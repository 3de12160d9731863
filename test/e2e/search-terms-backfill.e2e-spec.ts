import type { QueryRunner } from 'typeorm';
import { SearchTextAndConcepts1732401600000 } from '../../migrations/1732401600000-search-text-and-concepts';
import { putAll } from '../support/bundles';
import { hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

const RUN = `backfill-${Date.now().toString(36)}`;
const id = (local: string) => `${RUN}-${local}`;

/**
 * Migration 1732401600000 fills `search_text` and `search_concept` for resources stored before it
 * in SQL; the write path derives the same rows in JS. Both must agree, or `_text`, `_content` and
 * `:below` would answer differently for old and new resources.
 */
describe('migration 1732401600000 backfill = the rows SearchIndexWriter writes', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await createTestApp();
    const stored = await putAll(t.api, [
      {
        resourceType: 'CodeSystem',
        id: id('cs'),
        url: `http://example.org/fhir/CodeSystem/${RUN}`,
        status: 'active',
        content: 'complete',
        property: [{ code: 'subsumedBy', type: 'code' }, { code: 'parent', type: 'code' }, { code: 'child', type: 'code' }],
        concept: [
          { code: 'A', concept: [{ code: 'B', concept: [{ code: 'C' }] }] },
          { code: 'D', property: [{ code: 'subsumedBy', valueCode: 'B' }, { code: 'child', valueCode: 'E' }] },
          { code: 'E', property: [{ code: 'parent', valueCoding: { code: 'A' } }] },
        ],
      },
      {
        resourceType: 'Observation',
        id: id('o1'),
        status: 'final',
        code: { coding: [{ system: 'http://loinc.org', code: '8867-4', display: 'Heart rate' }], text: 'Pulse' },
        valueQuantity: { value: 72, unit: '/min' },
        text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml"><p>Pulse <b>72</b> &amp; regular</p></div>' },
        extension: [
          { url: 'http://example.org/fhir/StructureDefinition/blob', valueBase64Binary: Buffer.from('x'.repeat(200)).toString('base64') },
          { url: 'http://example.org/fhir/StructureDefinition/note', valueString: 'taken at rest' },
        ],
      },
      hiePatient({ id: id('p1'), name: [{ family: 'Backfill', given: ['Ann'] }] }),
    ]);
    expect([stored.status, stored.body.issue?.[0]?.diagnostics]).toEqual([200, undefined]);
  });
  afterAll(() => t.close());

  it('gives the same lexemes and the same concept rows', async () => {
    const keys = [id('cs'), id('o1'), id('p1')];
    const written = async () => ({
      text: await t.db.query(`SELECT resource_type, id, strip(narrative)::text AS narrative, strip(content)::text AS content FROM search_text WHERE id = ANY($1) ORDER BY id`, [keys]),
      concept: await t.db.query(`SELECT system, code, parent FROM search_concept WHERE id = ANY($1) ORDER BY code, parent NULLS FIRST`, [keys]),
    });
    const before = await written();
    expect(before.text).toHaveLength(3);
    expect(before.concept.map((c: { code: string; parent: string | null }) => `${c.code}<${c.parent ?? ''}`)).toEqual(['A<', 'B<A', 'C<B', 'D<', 'D<B', 'E<', 'E<A', 'E<D']);
    const runner = t.db.createQueryRunner();
    await runner.startTransaction();
    try {
      await runner.query(`DELETE FROM search_text`);
      await runner.query(`DELETE FROM search_concept`);
      // Only the migration's data statements: the tables and indexes exist already.
      const dataOnly = { query: (sql: string) => (/^\s*CREATE (TABLE|INDEX)/.test(sql) ? Promise.resolve() : runner.query(sql)) } as unknown as QueryRunner;
      await new SearchTextAndConcepts1732401600000().up(dataOnly);
      const text = await runner.query(`SELECT resource_type, id, strip(narrative)::text AS narrative, strip(content)::text AS content FROM search_text WHERE id = ANY($1) ORDER BY id`, [keys]);
      const concept = await runner.query(`SELECT system, code, parent FROM search_concept WHERE id = ANY($1) ORDER BY code, parent NULLS FIRST`, [keys]);
      expect({ text, concept }).toEqual(before);
    } finally {
      await runner.rollbackTransaction();
      await runner.release();
    }
  });
});
