import { combinedInsert } from './storage-session';

describe('combinedInsert (a session\'s deferred inserts as one statement)', () => {
  it('passes a single insert through unchanged', () => {
    expect(combinedInsert([{ text: 'INSERT INTO a (x) VALUES ($1)', values: [7] }])).toEqual({ text: 'INSERT INTO a (x) VALUES ($1)', values: [7] });
  });

  it('makes each insert a data-modifying CTE and renumbers its parameters after the ones before it (multi-digit too)', () => {
    const eleven = Array.from({ length: 11 }, (_, i) => `$${i + 1}`).join(', ');
    const out = combinedInsert([
      { text: 'INSERT INTO a (x, y) VALUES ($1, $2::text[])', values: ['a1', ['a2']] },
      { text: `INSERT INTO b SELECT * FROM unnest(${eleven})`, values: Array.from({ length: 11 }, (_, i) => `b${i + 1}`) },
      { text: 'INSERT INTO c (z) VALUES ($1)', values: ['c1'] },
    ]);
    expect(out.text).toBe(
      `WITH d0 AS (INSERT INTO a (x, y) VALUES ($1, $2::text[])),\nd1 AS (INSERT INTO b SELECT * FROM unnest(${Array.from({ length: 11 }, (_, i) => `$${i + 3}`).join(', ')})),\nd2 AS (INSERT INTO c (z) VALUES ($14))\nSELECT 1`,
    );
    expect(out.values).toEqual(['a1', ['a2'], ...Array.from({ length: 11 }, (_, i) => `b${i + 1}`), 'c1']);
  });
});
