/**
 * Small-cell suppression of a MeasureReport's counts (docs/public-health.md, "Small-cell
 * suppression"). Pure: no I/O, unit-tested in suppression.spec.ts.
 *
 * A report's counts form a linear system: every row, column and margin of a stratifier's table is a
 * line (its parts add up to its total), and a numerator never exceeds its denominator. A reader who
 * knows every published number can solve that system for a withheld one; suppression must leave
 * each withheld cell a feasible range at least `threshold` values wide.
 */

/** One count of the report: a stratum of one population (or a group total, or a margin). */
export interface SuppressionCell {
  key: string;
  value: number;
  /** `false`: the report never shows it (a margin of a pair whose component is not a stratifier of its own). */
  shown: boolean;
  /** Withhold this cell only when nothing else protects the line (the group's population count). */
  preferPublished?: boolean;
}

/** `parts` add up to `total` (keys of cells). */
export interface SuppressionLine {
  total: string;
  parts: string[];
}

export interface SuppressionProblem {
  cells: SuppressionCell[];
  lines: SuppressionLine[];
  /** `[a, b]`: a ≤ b (a numerator and its denominator). */
  atMost?: [string, string][];
}

/** The feasible range of a withheld cell given every published number (integers, both ends included). */
export interface FeasibleRange {
  min: number;
  max: number;
}

/**
 * The cells to withhold. Primary: a shown count from 1 to threshold−1. Complementary, repeated
 * until nothing changes: (1) every line holding a withheld (or never-shown) cell holds at least two;
 * (2) a withheld cell whose feasible range (linear programming over the whole system, `feasibleRanges`)
 * is narrower than `threshold` values gets one more cell of one of its lines withheld: the smallest
 * shown non-zero count there, so the least information is lost (a line's total only when no part is left).
 */
export function suppress(problem: SuppressionProblem, threshold: number): Set<string> {
  if (!Number.isInteger(threshold) || threshold < 5) throw new Error('The suppression threshold is at least 5');
  const cells = new Map(problem.cells.map((c) => [c.key, c]));
  const withheld = new Set<string>();
  for (const c of problem.cells) if (c.shown && c.value >= 1 && c.value < threshold) withheld.add(c.key);
  const unknown = (k: string): boolean => withheld.has(k) || !cells.get(k)!.shown;
  const linesOf = new Map<string, SuppressionLine[]>();
  for (const line of problem.lines) for (const k of [line.total, ...line.parts]) linesOf.set(k, [...(linesOf.get(k) ?? []), line]);

  /** The smallest shown, non-zero, not withheld member of a line (parts first), or undefined. */
  const complementIn = (line: SuppressionLine): string | undefined => {
    const pick = (keys: string[]): string | undefined =>
      keys
        .map((k) => cells.get(k)!)
        .filter((c) => c.shown && !withheld.has(c.key) && c.value > 0)
        .sort((a, b) => Number(!!a.preferPublished) - Number(!!b.preferPublished) || a.value - b.value || (a.key < b.key ? -1 : 1))[0]?.key;
    return pick(line.parts) ?? pick([line.total]);
  };

  for (let round = 0; round < 10_000; round++) {
    let changed = false;
    // (1) two per line: a line with one unknown member gives it away by subtraction.
    for (const line of problem.lines) {
      const members = [line.total, ...line.parts];
      const unknowns = members.filter(unknown).length;
      if (unknowns === 1) {
        const extra = complementIn(line) ?? members.find((k) => !unknown(k) && cells.get(k)!.shown);
        if (extra !== undefined) {
          withheld.add(extra);
          changed = true;
        }
      }
    }
    if (changed) continue;
    // (2) each withheld cell's range at least `threshold` wide.
    const ranges = feasibleRanges(problem, withheld);
    const narrow = [...withheld].filter((k) => ranges.get(k)!.max - ranges.get(k)!.min + 1 < threshold).sort();
    for (const k of narrow) {
      const candidates = (linesOf.get(k) ?? []).map(complementIn).filter((c): c is string => c !== undefined);
      const best = candidates.sort((a, b) => cells.get(a)!.value - cells.get(b)!.value || (a < b ? -1 : 1))[0];
      if (best !== undefined) {
        withheld.add(best);
        changed = true;
        break; // one at a time: the next range check sees what this one already protects
      }
    }
    if (!changed) return withheld;
  }
  throw new Error('Suppression did not converge');
}

/**
 * Each withheld cell's feasible range given every shown, non-withheld count: min and max of the
 * cell over the non-negative solutions of the lines and the ≤ relations, by linear programming
 * (the LP optimum bounds the integer one; rounding inward). `max` is Infinity when nothing bounds it.
 */
export function feasibleRanges(problem: SuppressionProblem, withheld: ReadonlySet<string>): Map<string, FeasibleRange> {
  const cells = new Map(problem.cells.map((c) => [c.key, c]));
  const isVar = (k: string): boolean => withheld.has(k) || !cells.get(k)!.shown;
  const vars = problem.cells.filter((c) => isVar(c.key)).map((c) => c.key);
  const index = new Map(vars.map((k, i) => [k, i]));
  // Rows of A x (= or ≤) b over the unknowns, the known values moved to the right-hand side.
  const eq: { a: number[]; b: number }[] = [];
  const le: { a: number[]; b: number }[] = [];
  const row = (terms: [string, number][]): { a: number[]; b: number; any: boolean } => {
    const a = new Array<number>(vars.length).fill(0);
    let b = 0;
    let any = false;
    for (const [k, coef] of terms) {
      if (isVar(k)) {
        a[index.get(k)!] += coef;
        any = true;
      } else b -= coef * cells.get(k)!.value;
    }
    return { a, b, any };
  };
  for (const line of problem.lines) {
    const r = row([...line.parts.map((k): [string, number] => [k, 1]), [line.total, -1]]);
    if (r.any) eq.push(r);
  }
  for (const [a, b] of problem.atMost ?? []) {
    const r = row([
      [a, 1],
      [b, -1],
    ]);
    if (r.any) le.push(r);
  }
  const lp = new LinearProgram(vars.length, eq, le);
  const out = new Map<string, FeasibleRange>();
  for (const k of withheld) {
    const i = index.get(k)!;
    const lo = lp.optimize(i, 'min');
    const hi = lp.optimize(i, 'max');
    out.set(k, { min: Math.max(0, Math.ceil(lo - 1e-7)), max: hi === Infinity ? Infinity : Math.floor(hi + 1e-7) });
  }
  return out;
}

const EPS = 1e-9;

/**
 * min/max of one variable subject to A_eq x = b, A_le x ≤ b, x ≥ 0: a dense two-phase simplex with
 * Bland's rule (no cycling). Phase 1 is solved once; each objective starts from its feasible basis.
 * The systems here are one report's withheld cells: tens of variables.
 */
class LinearProgram {
  private readonly tableau: number[][];
  private readonly basis: number[];
  private readonly columns: number;

  constructor(
    n: number,
    eq: { a: number[]; b: number }[],
    le: { a: number[]; b: number }[],
  ) {
    const m = eq.length + le.length;
    // Columns: n variables, le.length slacks, m artificials, then the right-hand side.
    this.columns = n + le.length + m;
    this.tableau = [];
    this.basis = [];
    const rows = [...eq.map((r) => ({ ...r, slack: -1 })), ...le.map((r, s) => ({ ...r, slack: s }))];
    rows.forEach((r, i) => {
      const t = new Array<number>(this.columns + 1).fill(0);
      const sign = r.b < 0 ? -1 : 1;
      for (let j = 0; j < n; j++) t[j] = sign * r.a[j];
      if (r.slack >= 0) t[n + r.slack] = sign;
      t[n + le.length + i] = 1;
      t[this.columns] = sign * r.b;
      this.tableau.push(t);
      this.basis.push(n + le.length + i);
    });
    // Phase 1: minimize the sum of the artificials.
    const artificial = (j: number): boolean => j >= n + le.length;
    const cost = new Array<number>(this.columns).fill(0).map((_, j) => (artificial(j) ? 1 : 0));
    const value = this.run(cost, () => true);
    if (value > 1e-6) throw new Error('The published counts are inconsistent (no feasible table)');
    // Drive artificials out of the basis where possible; then forbid them.
    this.tableau.forEach((t, i) => {
      if (!artificial(this.basis[i])) return;
      const j = t.findIndex((v, c) => c < n + le.length && Math.abs(v) > EPS);
      if (j >= 0) this.pivot(i, j);
    });
    this.allowed = (j) => !artificial(j);
  }

  private allowed: (j: number) => boolean = () => true;

  /** min or max of variable `v` (Infinity when unbounded above). */
  optimize(v: number, sense: 'min' | 'max'): number {
    const saved = { tableau: this.tableau.map((r) => [...r]), basis: [...this.basis] };
    const cost = new Array<number>(this.columns).fill(0);
    cost[v] = sense === 'min' ? 1 : -1;
    const value = this.run(cost, this.allowed);
    this.tableau.splice(0, this.tableau.length, ...saved.tableau);
    this.basis.splice(0, this.basis.length, ...saved.basis);
    return sense === 'min' ? value : -value;
  }

  /** Minimizes cost·x from the current basis; -Infinity when unbounded. */
  private run(cost: number[], allowed: (j: number) => boolean): number {
    for (;;) {
      // Reduced costs: c_j − c_B B⁻¹ A_j, read off the tableau.
      let entering = -1;
      for (let j = 0; j < this.columns && entering < 0; j++) {
        if (!allowed(j) || this.basis.includes(j)) continue;
        let reduced = cost[j];
        this.tableau.forEach((t, i) => (reduced -= cost[this.basis[i]] * t[j]));
        if (reduced < -EPS) entering = j;
      }
      if (entering < 0) {
        let value = 0;
        this.tableau.forEach((t, i) => (value += cost[this.basis[i]] * t[this.columns]));
        return value;
      }
      let leaving = -1;
      let best = Infinity;
      this.tableau.forEach((t, i) => {
        if (t[entering] > EPS) {
          const ratio = t[this.columns] / t[entering];
          if (ratio < best - EPS || (Math.abs(ratio - best) <= EPS && this.basis[i] < this.basis[leaving])) {
            best = ratio;
            leaving = i;
          }
        }
      });
      if (leaving < 0) return -Infinity;
      this.pivot(leaving, entering);
    }
  }

  private pivot(r: number, c: number): void {
    const p = this.tableau[r];
    const k = p[c];
    for (let j = 0; j <= this.columns; j++) p[j] /= k;
    this.tableau.forEach((t, i) => {
      if (i === r || Math.abs(t[c]) < EPS) return;
      const f = t[c];
      for (let j = 0; j <= this.columns; j++) t[j] -= f * p[j];
    });
    this.basis[r] = c;
  }
}
