import type { SqlBinder } from '../pipeline/access-predicate';

/** Bound parameters of one statement: user input only ever enters SQL as `$n`. */
export class SqlParams implements SqlBinder {
  readonly values: unknown[] = [];
  /** `outer`: bind into a statement someone else is building (an access fragment rendering clauses). */
  constructor(private readonly outer?: SqlBinder) {}
  bind(value: unknown): string {
    if (this.outer) return this.outer.bind(value);
    this.values.push(value);
    return `$${this.values.length}`;
  }
}
