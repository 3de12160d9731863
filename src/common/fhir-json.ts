import { randomUUID } from 'node:crypto';

/**
 * FHIR decimals keep their precision (R4 datatypes, `decimal`: `1.50` is not `1.5`). A JS number
 * cannot hold it, so a number whose source text differs from `String(Number(text))` (`1.50`, `0.0`,
 * `100.00`, more than 15 significant digits, an integer beyond 2^53) is kept as a `JSON.rawJSON`
 * value (Node 22), which `JSON.stringify` writes back verbatim. All other numbers stay plain
 * numbers, so most resources are unchanged and parse at full speed.
 *
 * Code that needs numbers (the @medplum/core validator, FHIRPath for the search index) works on
 * `numericView`; code that copies or patches resources keeps the raw values (`cloneJson`,
 * `encodeDecimals`/`decodeDecimals`).
 */
export interface RawDecimal {
  readonly rawJSON: string;
}

interface JsonWithSource {
  rawJSON(text: string): RawDecimal;
  isRawJSON(value: unknown): value is RawDecimal;
  parse(text: string, reviver: (this: unknown, key: string, value: unknown, context?: { source?: string }) => unknown): unknown;
}
const JSONS = JSON as unknown as JsonWithSource;

export function isRawDecimal(value: unknown): value is RawDecimal {
  return typeof value === 'object' && value !== null && JSONS.isRawJSON(value);
}

/** A decimal (plain number or raw text) as a number, e.g. for arithmetic or a validator. */
export function decimalNumber(value: number | RawDecimal): number {
  return typeof value === 'number' ? value : Number(value.rawJSON);
}

/** A decimal's text as received (`1.50`). */
export function decimalText(value: number | RawDecimal): string {
  return typeof value === 'number' ? String(value) : value.rawJSON;
}

/**
 * The exponent form (`1.50e1`, allowed by the R4 decimal regex) in plain notation with the same
 * digits and scale (`15.0`): PostgreSQL's jsonb numeric stores it so, and a create answers what a
 * later read returns.
 */
export function plainDecimal(text: string): string {
  const m = /^(-?)(\d+)(?:\.(\d+))?[eE]([-+]?\d+)$/.exec(text);
  // PostgreSQL's numeric has no negative zero.
  if (!m) return /^-0(\.0+)?$/.test(text) ? text.slice(1) : text;
  const [, sign, int, frac = '', exp] = m;
  const digits = int + frac;
  const point = int.length + Number(exp);
  let out: string;
  if (point >= digits.length) out = digits + '0'.repeat(point - digits.length);
  else if (point <= 0) out = `0.${'0'.repeat(-point)}${digits}`;
  else out = `${digits.slice(0, point)}.${digits.slice(point)}`;
  out = out.replace(/^0+(?=\d)/, '');
  return /^0(\.0*)?$/.test(out) ? out : sign + out;
}

/** A decimal from its text (FHIR XML's `value` attribute): a plain number when that keeps the text, else raw. */
export function decimalFromText(text: string): number | RawDecimal {
  const n = Number(text);
  return String(n) === text ? n : JSONS.rawJSON(plainDecimal(text));
}

function reviveDecimal(_key: string, value: unknown, context?: { source?: string }): unknown {
  if (typeof value !== 'number' || context?.source === undefined || context.source === String(value)) return value;
  return JSONS.rawJSON(plainDecimal(context.source));
}

/**
 * A JSON number (after `:`, `,` or `[`, the only places JSON puts one) that may not survive as a JS
 * number: a fraction ending in 0, an exponent, 15 or more digits, below 1e-6, negative zero. One
 * native regex pass; text inside strings may give false hits (only slower), never misses.
 */
const LOSSY_NUMBER = /[:,[]\s*(?:-0\s*[,}\]]|-?(?:\d+\.\d*0\s*[,}\]]|\d[\d.]*[eE]|[\d.]{16}|0\.00000))/;

/** Whether some number in the JSON text could change when read as a JS number. */
function mayLoseDecimals(text: string): boolean {
  return LOSSY_NUMBER.test(text);
}

/** JSON.parse that keeps every decimal as written. The reviver runs only when some number needs it. */
export function parseJsonKeepingDecimals(text: string): unknown {
  if (!mayLoseDecimals(text)) return JSON.parse(text);
  try {
    return JSONS.parse(text, reviveDecimal);
  } catch (err) {
    // The reviver walk recurses: JSON nested thousands deep overflows the stack. Such JSON is
    // refused for its depth anyway (json-shape.ts), which needs it parsed.
    if (err instanceof RangeError) return JSON.parse(text);
    throw err;
  }
}

/**
 * The resource with every raw decimal as a plain number (shared where nothing changes), and the raw
 * text of each such number. Two raw values in one resource that differ only beyond double
 * precision map to the first one's text.
 */
export function numericView<T>(value: T): { view: T; decimals: Map<number, RawDecimal> } {
  const decimals = new Map<number, RawDecimal>();
  const walk = (node: unknown): unknown => {
    if (node === null || typeof node !== 'object') return node;
    if (isRawDecimal(node)) {
      const n = Number(node.rawJSON);
      if (!decimals.has(n)) decimals.set(n, node);
      return n;
    }
    if (Array.isArray(node)) {
      let out: unknown[] | undefined;
      node.forEach((item, i) => {
        const next = walk(item);
        if (next !== item) (out ??= [...node])[i] = next;
      });
      return out ?? node;
    }
    let copy: Record<string, unknown> | undefined;
    for (const key of Object.keys(node)) {
      const item = (node as Record<string, unknown>)[key];
      const next = walk(item);
      if (next !== item) (copy ??= { ...(node as Record<string, unknown>) })[key] = next;
    }
    return copy ?? node;
  };
  return { view: walk(value) as T, decimals };
}

/** A deep copy that keeps raw decimals (immutable, so shared). */
export function cloneJson<T>(value: T): T {
  return mapJson(value, (leaf) => leaf);
}

/**
 * Patch libraries clone values as plain objects, which would turn a raw decimal into
 * `{"rawJSON": …}`. Around a patch, raw decimals travel as strings behind a per-call marker no
 * client can guess, and come back with `decodeDecimals`.
 */
export function decimalMarker(): string {
  return `\u0000decimal:${randomUUID()}:`;
}

export function encodeDecimals<T>(value: T, marker: string): T {
  return mapJson(value, (leaf) => (isRawDecimal(leaf) ? `${marker}${leaf.rawJSON}` : leaf));
}

export function decodeDecimals<T>(value: T, marker: string): T {
  return mapJson(value, (leaf) => (typeof leaf === 'string' && leaf.startsWith(marker) ? JSONS.rawJSON(leaf.slice(marker.length)) : leaf));
}

/** A full deep copy with `leaf` applied to every primitive and raw decimal. */
function mapJson<T>(value: T, leaf: (v: unknown) => unknown): T {
  const walk = (node: unknown): unknown => {
    if (node === null || typeof node !== 'object' || isRawDecimal(node)) return leaf(node);
    if (Array.isArray(node)) return node.map(walk);
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(node)) out[key] = walk((node as Record<string, unknown>)[key]);
    return out;
  };
  return walk(value) as T;
}
