import { XMLParser, XMLValidator } from 'fast-xml-parser';
import type { OperationOutcomeIssue } from '@medplum/fhirtypes';

/**
 * R4's rules for narrative XHTML (narrative.html, invariants txt-1 and txt-2): the root is a `div`
 * in the XHTML namespace; inside it only the basic formatting elements and attributes of HTML 4.0
 * (chapters 7–11 except 9.4 `ins`/`del`, and 15), `a` (href or name), images and style attributes;
 * no scripts, forms, base/link/xlink, frames, iframes, objects or event attributes (txt-1); and
 * some non-whitespace content (txt-2). Narratives are served back to browsers, so a txt-1 breach
 * is refused (422), never cleaned: the exchange does not change what a source system attested.
 */
const XHTML_NS = 'http://www.w3.org/1999/xhtml';

const ELEMENTS = new Set([
  // 7 structure (div, span), 8 language, 9 text (without 9.4 ins/del), 10 lists, 11 tables
  'div', 'span', 'bdo', 'p', 'br', 'pre', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'address', 'blockquote', 'q', 'sub', 'sup',
  'em', 'strong', 'dfn', 'code', 'samp', 'kbd', 'var', 'cite', 'abbr', 'acronym',
  'ul', 'ol', 'li', 'dl', 'dt', 'dd',
  'table', 'caption', 'thead', 'tfoot', 'tbody', 'colgroup', 'col', 'tr', 'th', 'td',
  // 15 alignment, font styles, rules
  'center', 'tt', 'i', 'b', 'big', 'small', 'strike', 's', 'u', 'font', 'basefont', 'hr',
  // links and images (with client-side image maps, as the HL7 validator allows)
  'a', 'img', 'map', 'area',
]);

/** Presentation and structure only: no event (`on*`), form, frame or script attribute is here. */
const ATTRIBUTES = new Set([
  'id', 'class', 'style', 'title', 'lang', 'xml:lang', 'dir', 'accesskey', 'tabindex',
  'align', 'valign', 'char', 'charoff', 'width', 'height', 'span', 'abbr', 'axis', 'headers', 'scope', 'rowspan', 'colspan',
  'border', 'cellpadding', 'cellspacing', 'summary', 'frame', 'rules', 'nowrap', 'bgcolor',
  'start', 'type', 'value', 'compact', 'clear', 'noshade', 'size', 'color', 'face',
  'href', 'name', 'rel', 'rev', 'hreflang', 'charset', 'shape', 'coords', 'nohref',
  'src', 'alt', 'longdesc', 'usemap', 'ismap', 'hspace', 'vspace', 'cite', 'datetime',
]);

/** Attributes holding a URL: their scheme must be one a browser will not run. */
const URL_ATTRIBUTES = new Set(['href', 'src', 'cite', 'longdesc', 'usemap']);
const SAFE_SCHEMES = new Set(['http', 'https', 'mailto', 'tel', 'urn', 'ftp']);
/** Images may be inline (`data:image/png;base64,…`); nothing else may be a data: URL. */
const DATA_IMAGE = /^data:image\/(png|gif|jpeg|jpg|bmp|webp);/i;
/** CSS that runs code or loads a script or binding (old IE `expression()`, Mozilla XBL, imports). */
const ACTIVE_CSS = /expression\s*\(|javascript:|vbscript:|behavior\s*:|-moz-binding|@import/i;

const parser = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: '',
  processEntities: false,
  htmlEntities: false,
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: false,
  commentPropName: '#comment',
  cdataPropName: '#cdata',
});

type XmlNode = Record<string, unknown> & { ':@'?: Record<string, unknown> };

/** Refusals of one narrative `div` (at `where`, e.g. `Patient.text.div`); none when it is acceptable. */
export function narrativeDivIssues(div: string, where: string): OperationOutcomeIssue[] {
  const refuse = (diagnostics: string): OperationOutcomeIssue[] => [{ severity: 'error', code: 'invariant', diagnostics: `${diagnostics} (R4 txt-1)`, expression: [where] }];
  // A DOCTYPE could declare entities (and expand them exponentially); a narrative has none.
  if (/<!DOCTYPE/i.test(div)) return refuse('The narrative may not contain a DOCTYPE');
  const wellFormed = XMLValidator.validate(div);
  if (wellFormed !== true) {
    return refuse(`The narrative is not well-formed XHTML (${wellFormed.err.msg.slice(0, 120)}, line ${wellFormed.err.line}, column ${wellFormed.err.col})`);
  }
  const roots = (parser.parse(div) as XmlNode[]).filter((n) => !('#comment' in n) && !isBlankText(n));
  const root = roots[0];
  if (roots.length !== 1 || !root || tagOf(root) !== 'div') return refuse('The narrative must be a single div element');
  if (root[':@']?.xmlns !== XHTML_NS) return refuse(`The narrative div must be in the XHTML namespace (xmlns="${XHTML_NS}")`);

  let content = false;
  const stack: XmlNode[] = [root];
  while (stack.length) {
    const node = stack.pop()!;
    if ('#text' in node) {
      if (String(node['#text']).trim() !== '') content = true;
      continue;
    }
    if ('#comment' in node) continue;
    const tag = tagOf(node);
    if (tag === '#cdata') return refuse('The narrative may not contain a CDATA section (an HTML reader sees markup in it)');
    if (tag.startsWith('?')) return refuse(`The narrative may not contain the processing instruction <${tag}>`);
    if (!ELEMENTS.has(tag)) return refuse(`The element <${tag.slice(0, 40)}> is not allowed in a narrative`);
    if (tag === 'img') content = true;
    for (const [name, raw] of Object.entries(node[':@'] ?? {})) {
      const problem = attributeProblem(tag, name, raw);
      if (problem) return refuse(problem);
    }
    // Not push(...children): a div of 300,000 paragraphs would pass that many arguments.
    for (const child of (node[tag] as XmlNode[] | undefined) ?? []) stack.push(child);
  }
  // txt-2 is a warning here: R4's own examples (ActivityDefinition/blood-tubes-supply and three
  // more) have whitespace-only narratives, and an empty div carries no risk to a reader.
  return content
    ? []
    : [{ severity: 'warning', code: 'invariant', diagnostics: 'The narrative has no content: it should hold some non-whitespace text or an image (R4 txt-2)', expression: [where] }];
}

function attributeProblem(tag: string, name: string, raw: unknown): string | undefined {
  const at = `the attribute ${name.slice(0, 40)} of <${tag}>`;
  if (name === 'xmlns') return raw === XHTML_NS ? undefined : `The ${at.slice(4)} must be the XHTML namespace`;
  if (!ATTRIBUTES.has(name)) return `The ${at.slice(4)} is not allowed in a narrative`;
  if (typeof raw !== 'string') return `The ${at.slice(4)} has no value`;
  const value = decodeReferences(raw);
  if (name === 'style' && ACTIVE_CSS.test(value.replace(/\/\*.*?\*\//g, '').replace(/\\/g, ''))) return `The style of <${tag}> holds active content`;
  if (URL_ATTRIBUTES.has(name) && !safeUrl(value, tag === 'img' && name === 'src')) return `The URL in ${at} has a scheme that is not allowed`;
  return undefined;
}

/**
 * Whether a browser would only navigate to or load the URL: relative, a fragment, or one of the
 * safe schemes. Controls and whitespace are dropped first (`java\tscript:` is `javascript:` to a
 * browser); an entity reference left in the scheme part (an HTML name such as `&colon;`) is refused.
 */
function safeUrl(value: string, image: boolean): boolean {
  const url = value.replace(/[\u0000-\u0020\u007f-\u009f]/g, '');
  const schemePart = url.split(/[/?#]/, 1)[0];
  if (schemePart.includes('&')) return false;
  const colon = schemePart.indexOf(':');
  if (colon < 0) return true;
  const scheme = schemePart.slice(0, colon).toLowerCase();
  return SAFE_SCHEMES.has(scheme) || (image && DATA_IMAGE.test(url));
}

/** XML's predefined entities and character references, as a reader of the XHTML sees them. */
function decodeReferences(value: string): string {
  return value.replace(/&(#x[0-9a-f]+|#\d+|amp|lt|gt|quot|apos);/gi, (ref, body: string) => {
    const lower = body.toLowerCase();
    if (lower.startsWith('#')) {
      const code = lower.startsWith('#x') ? parseInt(lower.slice(2), 16) : parseInt(lower.slice(1), 10);
      return code <= 0x10ffff ? String.fromCodePoint(code) : ref;
    }
    return { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" }[lower] ?? ref;
  });
}

function tagOf(node: XmlNode): string {
  return Object.keys(node).find((k) => k !== ':@') ?? '';
}

function isBlankText(node: XmlNode): boolean {
  return '#text' in node && String(node['#text']).trim() === '';
}

/**
 * Every narrative in a resource: its own `text.div` and those of resources inside it (contained
 * resources, Bundle entries, Parameters), at FHIRPath-like paths (`Bundle.entry[0].resource.text.div`).
 */
export function narrativeIssues(resource: unknown): OperationOutcomeIssue[] {
  const issues: OperationOutcomeIssue[] = [];
  const rootType = (resource as { resourceType?: unknown })?.resourceType;
  const stack: { node: unknown; path: string }[] = [{ node: resource, path: typeof rootType === 'string' ? rootType : '' }];
  while (stack.length) {
    const { node, path } = stack.pop()!;
    if (!node || typeof node !== 'object') continue;
    if (Array.isArray(node)) {
      node.forEach((item, i) => stack.push({ node: item, path: `${path}[${i}]` }));
      continue;
    }
    const record = node as Record<string, unknown>;
    const text = record.text as { div?: unknown } | undefined;
    if (typeof record.resourceType === 'string' && text && typeof text === 'object' && typeof text.div === 'string') {
      issues.push(...narrativeDivIssues(text.div, `${path}.text.div`));
    }
    for (const [key, value] of Object.entries(record)) {
      if (value && typeof value === 'object') stack.push({ node: value, path: path ? `${path}.${key}` : key });
    }
  }
  return issues;
}
