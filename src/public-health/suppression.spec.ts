import { feasibleRanges, suppress, SuppressionCell, SuppressionLine, SuppressionProblem } from './suppression';

/**
 * A two-way table (rows × columns) with its row margins, column margins and grand total, as a
 * report shows a pair stratifier beside its two single stratifiers and the group count.
 */
function table(counts: number[][]): SuppressionProblem {
  const rows = counts.length;
  const cols = counts[0].length;
  const cell = (i: number, j: number): string => `r${i}c${j}`;
  const cells: SuppressionCell[] = [{ key: 'total', value: counts.flat().reduce((a, b) => a + b, 0), shown: true, preferPublished: true }];
  const lines: SuppressionLine[] = [];
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) cells.push({ key: cell(i, j), value: counts[i][j], shown: true });
    cells.push({ key: `r${i}`, value: counts[i].reduce((a, b) => a + b, 0), shown: true });
    lines.push({ total: `r${i}`, parts: counts[i].map((_, j) => cell(i, j)) });
  }
  for (let j = 0; j < cols; j++) {
    cells.push({ key: `c${j}`, value: counts.reduce((a, r) => a + r[j], 0), shown: true });
    lines.push({ total: `c${j}`, parts: counts.map((_, i) => cell(i, j)) });
  }
  lines.push({ total: 'total', parts: counts.map((_, i) => `r${i}`) });
  lines.push({ total: 'total', parts: counts[0].map((_, j) => `c${j}`) });
  return { cells, lines };
}

/**
 * Every integer, non-negative filling of the withheld cells that agrees with every published number
 * (exhaustive search with propagation: a line with one unknown left fixes it), and from those each
 * withheld cell's smallest and largest value. Independent of the module's linear program.
 */
function exhaustiveRanges(problem: SuppressionProblem, withheld: Set<string>): Map<string, { min: number; max: number }> {
  const known = new Map(problem.cells.filter((c) => !withheld.has(c.key)).map((c) => [c.key, c.value]));
  const unknowns = [...withheld].sort();
  const bound = problem.cells.reduce((m, c) => Math.max(m, c.value), 0);
  const ranges = new Map(unknowns.map((k) => [k, { min: Infinity, max: -Infinity }]));
  const value = new Map<string, number>();
  const get = (k: string): number | undefined => known.get(k) ?? value.get(k);
  const consistent = (): boolean => {
    for (const line of problem.lines) {
      const t = get(line.total);
      const parts = line.parts.map(get);
      const sum = parts.reduce<number>((a, v) => a + (v ?? 0), 0);
      if (t !== undefined && sum > t) return false;
      if (t !== undefined && parts.every((v) => v !== undefined) && sum !== t) return false;
    }
    return true;
  };
  const search = (n: number): void => {
    if (!consistent()) return;
    if (n === unknowns.length) {
      for (const k of unknowns) {
        const r = ranges.get(k)!;
        r.min = Math.min(r.min, value.get(k)!);
        r.max = Math.max(r.max, value.get(k)!);
      }
      return;
    }
    for (let v = 0; v <= bound; v++) {
      value.set(unknowns[n], v);
      search(n + 1);
    }
    value.delete(unknowns[n]);
  };
  search(0);
  return ranges;
}

describe('small-cell suppression', () => {
  const T = 11;

  it('withholds 1..threshold-1, shows 0 and larger counts, and gives each withheld cell a second one in every line', () => {
    //           c0  c1  c2
    const counts = [
      [3, 40, 25], // r0: one primary cell
      [20, 0, 31], // r1: a zero is shown
      [15, 22, 18],
    ];
    const p = table(counts);
    const withheld = suppress(p, T);
    expect(withheld.has('r0c0')).toBe(true); // primary
    expect(withheld.has('r1c1')).toBe(false); // 0 shown
    // Row 0 and column 0 each need a second withheld cell: the smallest shown ones, 25 (r0c2) and 15 (r2c0).
    expect(withheld.has('r0c2')).toBe(true);
    expect(withheld.has('r2c0')).toBe(true);
    // …and the opposite corner r2c2 closes the rectangle so no line holds a single withheld cell.
    expect(withheld.has('r2c2')).toBe(true);
    expect([...withheld].sort()).toEqual(['r0c0', 'r0c2', 'r2c0', 'r2c2']);
    for (const line of p.lines) {
      const n = [line.total, ...line.parts].filter((k) => withheld.has(k)).length;
      expect(n === 0 || n >= 2).toBe(true);
    }
  });

  it('finds every withheld cell at least threshold values wide by exhaustive search over the published numbers', () => {
    const tables = [
      [
        [3, 40, 25],
        [20, 0, 31],
        [15, 22, 18],
      ],
      [
        [2, 4, 30],
        [12, 13, 14],
      ],
      [
        [1, 12],
        [12, 12],
      ],
      [
        [5, 0, 7],
        [0, 9, 30],
        [14, 20, 2],
      ],
      [[4, 30, 6, 12]],
    ];
    for (const counts of tables) {
      const p = table(counts);
      const withheld = suppress(p, T);
      expect(withheld.size).toBeGreaterThan(0);
      const exact = exhaustiveRanges(p, withheld);
      const lp = feasibleRanges(p, withheld);
      for (const [key, r] of exact) {
        // The true count is inside the range and the range is at least T values wide.
        expect(r.max - r.min + 1).toBeGreaterThanOrEqual(T);
        expect(lp.get(key)).toEqual(r);
      }
    }
  });

  it('bounds a numerator withheld beside its shown denominator by that denominator', () => {
    const p: SuppressionProblem = {
      cells: [
        { key: 'den', value: 40, shown: true },
        { key: 'num', value: 3, shown: true },
        { key: 'num2', value: 30, shown: true },
        { key: 'numTotal', value: 33, shown: true },
      ],
      lines: [{ total: 'numTotal', parts: ['num', 'num2'] }],
      atMost: [['num', 'den']],
    };
    const withheld = suppress(p, T);
    expect([...withheld].sort()).toEqual(['num', 'num2']);
    expect(feasibleRanges(p, withheld).get('num')).toEqual({ min: 0, max: 33 });
  });

  it('refuses a threshold below 5', () => {
    expect(() => suppress(table([[1, 2]]), 4)).toThrow('at least 5');
  });
});
