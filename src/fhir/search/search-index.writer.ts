import { Inject, Injectable } from '@nestjs/common';
import { convertToSearchableQuantities, convertToSearchableTokens, evalFhirPathTyped, toTypedValue, TypedValue } from '@medplum/core';
import type { CodeSystem, CodeSystemConcept, Coding, Period, Range, Reference, Resource } from '@medplum/fhirtypes';
import type { EntityManager } from 'typeorm';
import { FhirError } from '../../common/fhir-error';
import { APP_CONFIG, AppConfig } from '../../config/app.config';
import { DEFAULT_RESOURCE_COST } from '../../common/resource-cost';
import { parseFhirDateRange } from '../../common/fhir-date';
import { numericView, RawDecimal } from '../../common/fhir-json';
import { fhirPathCache } from '../definitions/fhirpath-cache';
import { ResourceIndexer } from '../storage/resource.repository';
import { MAX_COMPONENTS } from './search-composite';
import { CompositeComponentDef, DEFAULT_TEXT_LANGUAGE, SearchParamDef, searchParamsOf } from './search-parameter.registry';
import { normalizeString } from './search-normalize';
import { hasAnyElement, rootElementsRead } from './search-index.reads';

export interface IndexRows {
  token: [param: string, system: string | null, code: string | null, display: string | null][];
  string: [param: string, norm: string, exact: string][];
  date: [param: string, low: string, high: string][];
  /** A plain value has `value` (the decimal as received, `1.50` as raw JSON, so the numeric column keeps its digits); a Range has no value and its bounds in low/high (see rangeRow). */
  quantity: [param: string, value: number | RawDecimal | null, system: string | null, code: string | null, low?: string, high?: string][];
  reference: [param: string, targetType: string | null, targetId: string | null, url: string | null][];
  uri: [param: string, uri: string][];
  /** param, then MAX_COMPONENTS slots of (system, code, number, low, high); unused slots are null. */
  composite: (string | number | RawDecimal | null)[][];
  /** CodeSystems only: each concept with a parent (or null), for token `:above` / `:below`. */
  concept: [system: string, code: string, parent: string | null][];
  /** `_text` / `_content`: the narrative's XHTML (tags are dropped by the text-search parser) and the resource's text. */
  text?: [narrative: string | null, content: string];
}

/** A tsvector holds at most 1 MB; texts are cut well below, so no resource fails its write. */
export const MAX_TEXT_CHARS = 262_144;
/** Long base64 values (attachments, signatures) are no words anyone searches: left out of `_content`. */
const BASE64_RE = /^[A-Za-z0-9+/]{100,}={0,2}$/;

/** One component value in the composite table's generic typed columns. */
type Slot = [system: string | null, code: string | null, number: number | RawDecimal | null, low: string | null, high: string | null];
const EMPTY_SLOT: Slot = [null, null, null, null, null];
/** Bounds the cartesian product of component values per parameter and resource. */
const MAX_COMPOSITE_ROWS = 1000;
/** Longest run of index extraction before other requests get the event loop. */
const EXTRACT_SLICE_MS = 20;

function tooManyIndexRows(resourceType: string, max: number): FhirError {
  return new FhirError(422, 'too-costly', `${resourceType} would have more than ${max} search index rows: at most ${max} per resource (FHIR_MAX_INDEX_ROWS)`, [resourceType]);
}

/** Called after every parameter of every write: a plain sum, no array of the values (docs/performance.md, issue 21). */
function rowCount(r: IndexRows): number {
  return r.token.length + r.string.length + r.date.length + r.quantity.length + r.reference.length + r.uri.length + r.composite.length + r.concept.length + (r.text?.length ?? 0);
}

const TABLES = ['search_token', 'search_string', 'search_date', 'search_quantity', 'search_reference', 'search_uri', 'search_composite', 'search_concept', 'search_text'] as const;
const REFERENCE_RE = /^(?:(.*)\/)?([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[^/]+)?$/;
const MIN_INSTANT = '-infinity';
const MAX_INSTANT = 'infinity';

/**
 * Extracts the values of every search parameter of a resource (FHIRPath, @medplum/core) and writes
 * them to the typed index tables, in the write's transaction. Deleted resources lose their rows.
 */
@Injectable()
export class SearchIndexWriter extends ResourceIndexer {
  /**
   * The rows last written for each version object still in use (weakly held: gone with the write),
   * so a pre-commit listener reads the very rows SQL matches on without extracting again.
   */
  private readonly written = new WeakMap<Resource, IndexRows>();

  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {
    super();
  }

  /** The index rows of `resource` as this write stored them (extracted again when it was not written here). */
  rowsOf(resource: Resource): IndexRows {
    return this.written.get(resource) ?? this.extract(resource);
  }

  async index(tx: EntityManager, resourceType: string, id: string, resource: Resource | undefined, replacing = true): Promise<void> {
    if (resource) {
      await writeIndexRows(tx, [{ resourceType, id, rows: await this.extractForWrite(resource) }], replacing, this.config.searchTextLanguage);
    } else if (replacing) {
      // One round trip: data-modifying CTEs clear the previous version's rows in every table.
      await tx.query(
        `WITH ${TABLES.map((t, n) => `d${n} AS (DELETE FROM ${t} WHERE resource_type = $1 AND id = $2)`).join(', ')} SELECT 1`,
        [resourceType, id],
      );
    }
  }

  /** First versions created together: the same rows as `index`, in one statement. */
  override async indexCreated(tx: EntityManager, created: readonly Resource[]): Promise<void> {
    const items = [];
    for (const r of created) items.push({ resourceType: r.resourceType, id: r.id!, rows: await this.extractForWrite(r) });
    await writeIndexRows(tx, items, false, this.config.searchTextLanguage);
  }

  /**
   * A write's rows. Refused (422 `too-costly`, the write rolls back) once they pass
   * FHIR_MAX_INDEX_ROWS, without evaluating the remaining parameters; and the event loop is given
   * back between parameters whenever one slice has run EXTRACT_SLICE_MS, so a large resource
   * does not stall other requests.
   */
  private async extractForWrite(resource: Resource): Promise<IndexRows> {
    const max = (this.config.resourceCost ?? DEFAULT_RESOURCE_COST).maxIndexRows;
    const extraction = this.startExtraction(resource, false);
    while (!this.continueExtraction(extraction, max, Date.now() + EXTRACT_SLICE_MS)) await new Promise<void>((resolve) => setImmediate(resolve));
    this.written.set(resource, extraction.rows);
    return extraction.rows;
  }

  /** `everyParameter`: evaluate even parameters whose root elements are absent (the reference the skip is tested against). */
  extract(resource: Resource, everyParameter = false): IndexRows {
    const extraction = this.startExtraction(resource, everyParameter);
    this.continueExtraction(extraction, Infinity, Infinity);
    return extraction.rows;
  }

  /** The rows that need no search parameter (text, CodeSystem concepts), and where the parameters start. */
  private startExtraction(resource: Resource, everyParameter: boolean): Extraction {
    const rows: IndexRows = EMPTY_ROWS();
    // FHIRPath needs numbers; each number's text as received goes back into the index rows.
    const { view, decimals } = numericView(resource);
    if (view.resourceType === 'CodeSystem') rows.concept = conceptRows(view);
    const div = (view as { text?: { div?: unknown } }).text?.div;
    rows.text = [typeof div === 'string' ? div.slice(0, MAX_TEXT_CHARS) : null, contentText(view)];
    const root = [toTypedValue(localizeReferences(view, `${this.config.fhirBaseUrl}/`))];
    return { resource, everyParameter, rows, decimals, root, keys: Object.keys(resource), parameters: searchParamsOf(resource.resourceType).values() };
  }

  /**
   * Evaluates the search parameters in a plain loop until all are done (true) or `deadline`
   * (`Date.now()`) has passed between two of them (false: call again to go on, after giving the
   * event loop back). Refused (`too-costly`) once the rows pass `maxRows`, before the remaining
   * parameters are evaluated.
   */
  private continueExtraction(x: Extraction, maxRows: number, deadline: number): boolean {
    const { resource, rows, root, keys } = x;
    if (rowCount(rows) > maxRows) throw tooManyIndexRows(resource.resourceType, maxRows);
    for (let next = x.parameters.next(); !next.done; next = x.parameters.next()) {
      const def = next.value;
      if (def.column || def.fullText) continue;
      // Most parameters of a type read elements a given resource does not have: nothing to evaluate.
      const reads = x.everyParameter ? null : rootElementsRead(def, resource.resourceType);
      if (reads && !hasAnyElement(keys, reads)) continue;
      let values: TypedValue[];
      try {
        values = evalFhirPathTyped(def.expression, root, {}, fhirPathCache);
      } catch {
        continue; // An expression the engine cannot evaluate indexes nothing rather than failing the write.
      }
      if (!values.length) continue;
      // Another extraction may have run while this one was suspended.
      this.decimals = x.decimals;
      switch (def.type) {
        case 'token':
          this.tokens(def.code, values, rows);
          break;
        case 'string': {
          const list = strings(values);
          // Past the write's row limit already: stop before normalizing them all.
          if (rowCount(rows) + list.length > maxRows) throw tooManyIndexRows(resource.resourceType, maxRows);
          for (const s of list) rows.string.push([def.code, normalizeString(s), s]);
          break;
        }
        case 'date':
          for (const [low, high] of dateRanges(values)) rows.date.push([def.code, low, high]);
          break;
        case 'number':
          for (const v of values) if (typeof v.value === 'number') rows.quantity.push([def.code, this.decimal(v.value), null, null]);
          this.ranges(def.code, 'number', values, rows);
          break;
        case 'quantity':
          for (const q of convertToSearchableQuantities(values)) {
            if (typeof q.value === 'number') rows.quantity.push([def.code, this.decimal(q.value), q.system ?? null, q.code ?? q.unit ?? null]);
          }
          this.ranges(def.code, 'quantity', values, rows);
          break;
        case 'reference':
          this.references(def.code, values, rows);
          break;
        case 'uri':
          for (const v of values) if (typeof v.value === 'string') rows.uri.push([def.code, v.value]);
          break;
        case 'composite':
          this.composites(def.code, def.components ?? [], values, root[0], rows);
          break;
      }
      if (rowCount(rows) > maxRows) throw tooManyIndexRows(resource.resourceType, maxRows);
      if (Date.now() >= deadline) return false;
    }
    return true;
  }

  /** Range values (@medplum/core's searchable conversions skip them): one row with both bounds. */
  private ranges(param: string, type: 'number' | 'quantity', values: TypedValue[], rows: IndexRows): void {
    for (const v of values) {
      if (v.type !== 'Range') continue;
      const row = rangeRow(param, type, v.value as Range);
      if (row) rows.quantity.push(row);
    }
  }

  /** Raw decimals of the resource being extracted, by their number (extract is synchronous). */
  private decimals = new Map<number, RawDecimal>();

  private decimal(n: number): number | RawDecimal {
    return this.decimals.get(n) ?? n;
  }

  private tokens(param: string, values: TypedValue[], rows: IndexRows): void {
    for (const t of searchableTokens(values)) rows.token.push([param, t.system ?? null, t.value ?? null, null]);
    // Display texts serve `:text`.
    for (const v of values) {
      const texts: string[] = [];
      if (v.type === 'CodeableConcept') {
        const cc = v.value as { text?: string; coding?: Coding[] };
        if (cc.text) texts.push(cc.text);
        for (const c of cc.coding ?? []) if (c.display) texts.push(c.display);
      } else if (v.type === 'Coding' && (v.value as Coding).display) {
        texts.push((v.value as Coding).display!);
      } else if (v.type === 'Identifier') {
        const idType = (v.value as { type?: { coding?: Coding[]; text?: string } }).type;
        // `:of-type`: type system|code and the identifier value, as one token.
        for (const c of idType?.coding ?? []) {
          rows.token.push([`${param}:of-type`, `${c.system ?? ''}|${c.code ?? ''}`, (v.value as { value?: string }).value ?? null, null]);
        }
        if (idType?.text) texts.push(idType.text);
      }
      for (const text of texts) rows.token.push([param, null, null, normalizeString(text)]);
    }
  }

  /**
   * Each value of the composite's expression (the resource, or one Observation.component) yields
   * the combinations of its components' values, so a code is only paired with its own value.
   */
  private composites(param: string, components: CompositeComponentDef[], bases: TypedValue[], root: TypedValue, rows: IndexRows): void {
    if (!components.length) return;
    let count = 0;
    for (const base of bases) {
      let combos: Slot[][] = [[]];
      for (const component of components) {
        let values: TypedValue[];
        try {
          values = evalFhirPathTyped(component.expression, [base], { '%resource': root }, fhirPathCache);
        } catch {
          values = [];
        }
        const slots = this.componentSlots(component.type, values);
        combos = combos.flatMap((combo) => slots.map((slot) => [...combo, slot]));
        if (!combos.length) break;
      }
      for (const combo of combos) {
        if (++count > MAX_COMPOSITE_ROWS) return;
        const padded = [...combo, ...Array<Slot>(MAX_COMPONENTS - combo.length).fill(EMPTY_SLOT)];
        rows.composite.push([param, ...padded.flat()]);
      }
    }
  }

  private componentSlots(type: CompositeComponentDef['type'], values: TypedValue[]): Slot[] {
    switch (type) {
      case 'token':
        return searchableTokens(values).map((t) => [t.system ?? null, t.value ?? null, null, null, null]);
      case 'string':
        return strings(values).map((s) => [null, normalizeString(s), null, null, null]);
      case 'date':
        return dateRanges(values).map(([low, high]) => [null, null, null, low, high]);
      case 'number':
        return values.filter((v) => typeof v.value === 'number').map((v) => [null, null, this.decimal(v.value as number), null, null]);
      case 'quantity':
        return convertToSearchableQuantities(values)
          .filter((q) => typeof q.value === 'number')
          .map((q) => [q.system ?? null, q.code ?? q.unit ?? null, this.decimal(q.value as number), null, null]);
      case 'reference': {
        const refs = EMPTY_ROWS();
        this.references('', values, refs);
        return refs.reference.map(([, type, id, url]) => [null, type && id ? `${type}/${id}` : url, null, null, null]);
      }
      case 'uri':
        return values.filter((v) => typeof v.value === 'string').map((v) => [null, v.value as string, null, null, null]);
    }
  }

  private references(param: string, values: TypedValue[], rows: IndexRows): void {
    for (const v of values) {
      const ref = v.value as Reference | string;
      const raw = typeof ref === 'string' ? ref : ref?.reference;
      if (typeof ref === 'object' && ref?.identifier?.value) {
        rows.token.push([`${param}:identifier`, ref.identifier.system ?? null, ref.identifier.value, null]);
      }
      if (!raw) continue;
      const m = REFERENCE_RE.exec(raw);
      if (m && (!m[1] || m[1] === this.config.fhirBaseUrl)) rows.reference.push([param, m[2], m[3], null]);
      else rows.reference.push([param, m?.[2] ?? null, null, raw]);
    }
  }
}

/** Marks the display texts @medplum/core emits as tokens; they serve `:text`, never code matches. */
const TEXT_SYSTEM = '\u0000text';

/** system|code tokens of Coding, CodeableConcept, Identifier, ContactPoint, code, boolean, string. */
function searchableTokens(values: TypedValue[]): { system?: string; value?: string }[] {
  return convertToSearchableTokens(values, { textSearchSystem: TEXT_SYSTEM }).filter((t) => t.system !== TEXT_SYSTEM);
}

/** One resource's extraction, resumable between search parameters. */
interface Extraction {
  resource: Resource;
  everyParameter: boolean;
  rows: IndexRows;
  decimals: Map<number, RawDecimal>;
  root: TypedValue[];
  keys: string[];
  parameters: Iterator<SearchParamDef>;
}

const EMPTY_ROWS = (): IndexRows => ({ token: [], string: [], date: [], quantity: [], reference: [], uri: [], composite: [], concept: [] });

/**
 * `_content`: every string and number of the resource in document order, except its `id` and `meta`
 * (server-assigned bookkeeping with parameters of their own) and long base64 values, cut at
 * MAX_TEXT_CHARS. Migration 1732401600000's backfill applies the same rule to stored rows.
 */
export function contentText(resource: Resource): string {
  const { id: _id, meta: _meta, ...content } = resource;
  const parts: string[] = [];
  let length = 0;
  const visit = (node: unknown): void => {
    if (length > MAX_TEXT_CHARS) return;
    if (typeof node === 'string') {
      if (!BASE64_RE.test(node)) {
        parts.push(node);
        length += node.length + 1;
      }
    } else if (typeof node === 'number') {
      parts.push(String(node));
      length += 8;
    } else if (Array.isArray(node)) {
      for (const item of node) visit(item);
    } else if (node && typeof node === 'object') {
      // A decimal kept as its source text (JSON.rawJSON) is a number too.
      const raw = (node as { rawJSON?: unknown }).rawJSON;
      if (typeof raw === 'string' && Object.keys(node).length === 0) parts.push(raw);
      else for (const value of Object.values(node)) visit(value);
    }
  };
  visit(content);
  return parts.join(' ').slice(0, MAX_TEXT_CHARS);
}

/** Properties that name a concept's parent (R4 concept-properties `parent`, and `subsumedBy`) or child. */
const PARENT_PROPERTIES = new Set(['parent', 'subsumedBy']);

/**
 * The hierarchy of a CodeSystem as (system, code, parent) rows: every concept once with the concept
 * it is nested in (null at the root), plus one row per `parent` / `subsumedBy` property and one per
 * `child` property (the child's row). Migration 1732401600000 derives the same rows in SQL.
 */
export function conceptRows(cs: CodeSystem): IndexRows['concept'] {
  const system = cs.url;
  if (!system) return [];
  const seen = new Set<string>();
  const out: IndexRows['concept'] = [];
  const add = (code: string, parent: string | null): void => {
    const key = `${code}\u0000${parent ?? ''}`;
    if (seen.has(key)) return;
    seen.add(key);
    out.push([system, code, parent]);
  };
  const walk = (concepts: CodeSystemConcept[] | undefined, parent: string | null): void => {
    for (const c of concepts ?? []) {
      if (!c.code) continue;
      add(c.code, parent);
      for (const p of c.property ?? []) {
        const other = p.valueCode ?? p.valueCoding?.code;
        if (!other || !p.code) continue;
        if (PARENT_PROPERTIES.has(p.code)) add(c.code, other);
        else if (p.code === 'child') add(other, c.code);
      }
      walk(c.concept, c.code);
    }
  };
  walk(cs.concept, null);
  return out;
}

/**
 * Absolute references to this server (`https://hie/fhir/Patient/1`) become relative, so FHIRPath
 * `resolve() is Patient` in parameter expressions recognises them. Copies only what it changes.
 */
function localizeReferences<T>(node: T, base: string): T {
  if (Array.isArray(node)) {
    let changed = false;
    const out = node.map((item) => {
      const next = localizeReferences(item, base);
      changed ||= next !== item;
      return next;
    });
    return (changed ? out : node) as T;
  }
  if (!node || typeof node !== 'object') return node;
  let copy: Record<string, unknown> | undefined;
  for (const [key, value] of Object.entries(node as Record<string, unknown>)) {
    let next = value;
    if (key === 'reference' && typeof value === 'string' && value.startsWith(base)) next = value.slice(base.length);
    else if (value && typeof value === 'object') next = localizeReferences(value, base);
    if (next !== value) {
      copy ??= { ...(node as Record<string, unknown>) };
      copy[key] = next;
    }
  }
  return (copy ?? node) as T;
}

/**
 * A Range as an index row: R4 search compares the target's range with the search value's. A
 * missing bound is open (-Infinity / Infinity); a Range without either bound indexes nothing. For a
 * quantity parameter the unit is the bounds' (low's, else high's) system and code.
 */
function rangeRow(param: string, type: 'number' | 'quantity', range: Range): IndexRows['quantity'][number] | undefined {
  const low = indexNumber(range.low?.value);
  const high = indexNumber(range.high?.value);
  if (low === undefined && high === undefined) return undefined;
  const unit = type === 'quantity' ? (range.low?.value !== undefined ? range.low : range.high) : undefined;
  return [param, null, unit?.system ?? null, unit?.code ?? unit?.unit ?? null, low ?? '-Infinity', high ?? 'Infinity'];
}

/** A FHIR decimal as the numeric text of an index column (the one place numbers become index text). */
function indexNumber(value: number | undefined): string | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? String(value) : undefined;
}

/** Every string part of a value: each HumanName and Address part separately, for prefix search. */
function strings(values: TypedValue[]): string[] {
  const out: string[] = [];
  for (const v of values) {
    const value = v.value as unknown;
    if (typeof value === 'string') out.push(value);
    else if (v.type === 'HumanName') {
      const n = value as { family?: string; given?: string[]; prefix?: string[]; suffix?: string[]; text?: string };
      out.push(...[n.family, ...(n.given ?? []), ...(n.prefix ?? []), ...(n.suffix ?? []), n.text].filter((s): s is string => !!s));
    } else if (v.type === 'Address') {
      const a = value as Record<string, string | string[] | undefined>;
      for (const key of ['text', 'line', 'city', 'district', 'state', 'postalCode', 'country']) {
        const part = a[key];
        if (Array.isArray(part)) out.push(...part);
        else if (typeof part === 'string') out.push(part);
      }
    } else if (value && typeof value === 'object' && typeof (value as { text?: unknown }).text === 'string') {
      out.push((value as { text: string }).text);
    }
  }
  return out;
}

/** date/dateTime/instant, Period (open ends are unbounded) and Timing, as [low, high) instants. */
function dateRanges(values: TypedValue[]): [string, string][] {
  const out: [string, string][] = [];
  const push = (start?: string, end?: string): void => {
    const low = start ? parseFhirDateRange(start)?.start : MIN_INSTANT;
    const high = end ? parseFhirDateRange(end)?.end : MAX_INSTANT;
    if (low && high) out.push([low, high]);
  };
  for (const v of values) {
    const value = v.value as unknown;
    if (typeof value === 'string') push(value, value);
    else if (v.type === 'Period') {
      const p = value as Period;
      if (p.start || p.end) push(p.start, p.end);
    } else if (v.type === 'Timing') {
      const t = value as { event?: string[]; repeat?: { boundsPeriod?: Period } };
      for (const e of t.event ?? []) push(e, e);
      const b = t.repeat?.boundsPeriod;
      if (b?.start || b?.end) push(b.start, b.end);
    }
  }
  return out;
}

export async function writeRows(tx: EntityManager, resourceType: string, id: string, rows: IndexRows, textLanguage = DEFAULT_TEXT_LANGUAGE): Promise<void> {
  await writeIndexRows(tx, [{ resourceType, id, rows }], false, textLanguage);
}


/**
 * The index rows of one or many resources in ONE statement: a data-modifying CTE per table, each
 * table's rows travelling as one JSON array (cheaper to encode than an array per column).
 * `replacing`: the same statement first deletes the resources' earlier rows (every sub-statement
 * sees the snapshot from before the statement, so the deletes never touch the new rows).
 */
export async function writeIndexRows(
  tx: EntityManager,
  items: readonly { resourceType: string; id: string; rows: IndexRows }[],
  replacing: boolean,
  textLanguage = DEFAULT_TEXT_LANGUAGE,
): Promise<void> {
  const ctes: string[] = [];
  const params: unknown[] = [];
  if (replacing) {
    params.push(items.map((i) => i.resourceType), items.map((i) => i.id));
    for (const table of TABLES) {
      ctes.push(`d${ctes.length} AS (DELETE FROM ${table} WHERE (resource_type, id) IN (SELECT * FROM unnest($1::text[], $2::text[])))`);
    }
  }
  const insert = (table: string, columns: string[], casts: string[], pick: (rows: IndexRows) => unknown[][]): void => {
    const data: unknown[][] = [];
    for (const item of items) for (const row of pick(item.rows)) data.push([item.resourceType, item.id, ...row]);
    if (!data.length) return;
    params.push(JSON.stringify(data));
    ctes.push(
      `i${ctes.length} AS (INSERT INTO ${table} (resource_type, id, ${columns.join(', ')})
         SELECT e->>0, e->>1, ${columns.map((_, c) => `(e->>${c + 2})::${casts[c]}`).join(', ')} FROM jsonb_array_elements($${params.length}::jsonb) AS e)`,
    );
  };
  insert('search_token', ['param', 'system', 'code', 'display'], ['text', 'text', 'text', 'text'], (r) => r.token);
  insert('search_string', ['param', 'norm', 'exact'], ['text', 'text', 'text'], (r) => r.string);
  insert('search_date', ['param', 'low', 'high'], ['text', 'timestamptz', 'timestamptz'], (r) => r.date);
  insert('search_quantity', ['param', 'value', 'system', 'code', 'low', 'high'], ['text', 'numeric', 'text', 'text', 'numeric', 'numeric'], (r) => r.quantity);
  insert('search_reference', ['param', 'target_type', 'target_id', 'url'], ['text', 'text', 'text', 'text'], (r) => r.reference);
  insert('search_uri', ['param', 'uri'], ['text', 'text'], (r) => r.uri);
  const slotColumns = Array.from({ length: MAX_COMPONENTS }, (_, i) => [`c${i + 1}_system`, `c${i + 1}_code`, `c${i + 1}_number`, `c${i + 1}_low`, `c${i + 1}_high`]).flat();
  const slotCasts = Array.from({ length: MAX_COMPONENTS }, () => ['text', 'text', 'numeric', 'timestamptz', 'timestamptz']).flat();
  insert('search_composite', ['param', ...slotColumns], ['text', ...slotCasts], (r) => r.composite);
  insert('search_concept', ['system', 'code', 'parent'], ['text', 'text', 'text'], (r) => r.concept);
  const texts = items.filter((i) => i.rows.text).map((i) => [i.resourceType, i.id, ...i.rows.text!]);
  if (texts.length) {
    // `_text` / `_content`: PostgreSQL tokenizes with the configured text-search configuration.
    params.push(JSON.stringify(texts), textLanguage);
    const language = `$${params.length}::regconfig`;
    ctes.push(
      `i${ctes.length} AS (INSERT INTO search_text (resource_type, id, narrative, content)
         SELECT e->>0, e->>1, to_tsvector(${language}, e->>2), to_tsvector(${language}, e->>3) FROM jsonb_array_elements($${params.length - 1}::jsonb) AS e)`,
    );
  }
  if (ctes.length) await tx.query(`WITH ${ctes.join(', ')} SELECT 1`, params);
}
