import type { OperationDefinition, OperationDefinitionParameter, ParametersParameter, Resource } from '@medplum/fhirtypes';
import { FhirError } from '../../common/fhir-error';
import { parseFhirDateRange } from '../../common/fhir-date';
import type { OperationInteraction } from '../pipeline/interaction';

/** Response-shaping parameters any operation accepts in the query string (not in its definition). */
const SHAPING = new Set(['_format', '_pretty']);

const DATE = String.raw`\d{4}(?:-\d{2}(?:-\d{2})?)?`;
const TIME = String.raw`T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})`;
const INT32_MAX = 2_147_483_647;

/**
 * R4 primitive types (datatypes.html#primitive) an input parameter may have, with the lexical
 * check of their text. Dates are also checked for real calendar values.
 */
const PRIMITIVES: Record<string, (text: string) => boolean> = {
  boolean: (t) => t === 'true' || t === 'false',
  integer: (t) => /^-?(?:0|[1-9]\d{0,9})$/.test(t) && Math.abs(Number(t)) <= INT32_MAX,
  positiveInt: (t) => /^[1-9]\d{0,9}$/.test(t) && Number(t) <= INT32_MAX,
  unsignedInt: (t) => /^(?:0|[1-9]\d{0,9})$/.test(t) && Number(t) <= INT32_MAX,
  decimal: (t) => /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/.test(t),
  date: (t) => new RegExp(`^${DATE}$`).test(t) && !!parseFhirDateRange(t),
  dateTime: (t) => new RegExp(`^${DATE}(?:${TIME})?$`).test(t) && !!parseFhirDateRange(t),
  instant: (t) => new RegExp(`^\\d{4}-\\d{2}-\\d{2}${TIME}$`).test(t) && !!parseFhirDateRange(t),
  code: (t) => /^\S+(?: \S+)*$/.test(t),
  id: (t) => /^[A-Za-z0-9\-.]{1,64}$/.test(t),
  string: (t) => t.length > 0,
  markdown: (t) => t.length > 0,
  uri: (t) => /^\S+$/.test(t),
  url: (t) => /^\S+$/.test(t),
  canonical: (t) => /^\S+$/.test(t),
  oid: (t) => /^urn:oid:[0-2](?:\.(?:0|[1-9]\d*))+$/.test(t),
  uuid: (t) => /^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(t),
};

/** Families whose members a client may use for one another in a Parameters body (the text is still checked). */
const FAMILY: Record<string, string> = {
  integer: 'integer',
  positiveInt: 'integer',
  unsignedInt: 'integer',
  string: 'string',
  code: 'string',
  id: 'string',
  markdown: 'string',
  uri: 'string',
  url: 'string',
  canonical: 'string',
  oid: 'string',
  uuid: 'string',
};

const ucFirst = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1);
const clip = (s: unknown): string => String(s).slice(0, 64);

/** One given input parameter: as the client sent it, and a primitive's text. */
interface GivenParameter {
  readonly parameter: ParametersParameter;
  readonly text?: string;
}

/**
 * The checked input of one operation invocation: every name is a declared `in` parameter, each
 * given within its cardinality and with a value of its declared type.
 */
export class OperationInput {
  constructor(private readonly given: ReadonlyMap<string, readonly GivenParameter[]>) {}

  has(name: string): boolean {
    return (this.given.get(name)?.length ?? 0) > 0;
  }

  /** Every value given for a parameter, as Parameters.parameter entries. */
  all(name: string): ParametersParameter[] {
    return (this.given.get(name) ?? []).map((g) => g.parameter);
  }

  /** The texts of a primitive parameter (a repeating one: each occurrence). */
  texts(name: string): string[] {
    return (this.given.get(name) ?? []).map((g) => g.text).filter((t): t is string => t !== undefined);
  }

  /** The text of a primitive parameter with `max` 1 (the parser already refused a second). */
  text(name: string): string | undefined {
    return this.texts(name)[0];
  }

  integer(name: string): number | undefined {
    const t = this.text(name);
    return t === undefined ? undefined : Number(t);
  }

  resource(name: string): Resource | undefined {
    return this.all(name)[0]?.resource;
  }
}

export interface OperationInputOptions {
  /**
   * false: the body is not a Parameters of this operation (e.g. `$validate` given the resource
   * itself); only the query string is read.
   */
  readonly body?: boolean;
}

/**
 * The one parser of operation input (operations.html#request), driven by the operation's
 * OperationDefinition: query-string values and the parameters of a Parameters body, each checked
 * against its `in` declaration — a name not declared, a value not of the declared type, more than
 * `max` or fewer than `min` occurrences is a 400 OperationOutcome naming the parameter in
 * `expression`. Only primitive types (and a Reference, as its reference text) can be given in the
 * query string; a complex type needs the POST body.
 */
export function parseOperationInput(definition: OperationDefinition, i: OperationInteraction, options: OperationInputOptions = {}): OperationInput {
  const declared = new Map<string, OperationDefinitionParameter>();
  for (const p of definition.parameter ?? []) if (p.use === 'in') declared.set(p.name as string, p);
  const op = `$${definition.code ?? i.operation}`;
  const given = new Map<string, GivenParameter[]>();
  const add = (name: string, value: GivenParameter): void => {
    given.set(name, [...(given.get(name) ?? []), value]);
  };
  const declaration = (name: string): OperationDefinitionParameter => {
    const d = declared.get(name);
    if (!d) throw FhirError.badRequest(`Unknown parameter '${clip(name)}' for ${op}`, [clip(name)]);
    return d;
  };

  for (const [name, v] of Object.entries(i.query)) {
    if (SHAPING.has(name)) continue;
    const d = declaration(name);
    for (const text of Array.isArray(v) ? v : v !== undefined ? [v] : []) add(name, fromQuery(op, d, text));
  }
  const body = i.body;
  if (options.body !== false && isParameters(body)) {
    const list = (body as { parameter?: unknown }).parameter ?? [];
    if (!Array.isArray(list)) throw FhirError.badRequest('Parameters.parameter must be an array', ['Parameters.parameter']);
    list.forEach((p: unknown, n: number) => {
      if (!p || typeof p !== 'object' || typeof (p as ParametersParameter).name !== 'string') {
        throw FhirError.badRequest('Every Parameters.parameter needs a name', [`Parameters.parameter[${n}]`]);
      }
      const parameter = p as ParametersParameter;
      add(parameter.name as string, fromBody(op, declaration(parameter.name as string), parameter));
    });
  } else if (options.body !== false && !isEmpty(body)) {
    throw FhirError.badRequest(`The body of ${op} must be a Parameters resource`, ['resourceType']);
  }

  for (const [name, d] of declared) {
    const count = given.get(name)?.length ?? 0;
    if (count < (d.min ?? 0)) throw FhirError.badRequest(`Parameter '${name}' is required by ${op}`, [name], 'required');
    if (d.max !== '*' && count > Number(d.max ?? '1')) {
      throw FhirError.badRequest(`Parameter '${name}' may be given at most ${d.max ?? '1'} time${d.max === '1' || d.max === undefined ? '' : 's'} to ${op}`, [name]);
    }
  }
  return new OperationInput(given);
}

/** A query-string value as the declared type: a primitive's text, or a Reference's reference. */
function fromQuery(op: string, d: OperationDefinitionParameter, text: string): GivenParameter {
  const name = d.name as string;
  const type = d.type as string;
  if (type === 'Reference') {
    if (!PRIMITIVES.string(text)) throw FhirError.badRequest(`Parameter '${name}' of ${op} needs a reference`, [name]);
    return { parameter: { name, valueReference: { reference: text } } };
  }
  const check = PRIMITIVES[type];
  if (!check) throw FhirError.badRequest(`Parameter '${name}' of ${op} is a ${type}: POST it in a Parameters body`, [name]);
  if (!check(text)) throw badValue(op, name, type, text);
  return { parameter: { name, [`value${ucFirst(type)}`]: typed(type, text) } as ParametersParameter, text };
}

/** A Parameters body entry: its value must be of the declared type (or the same primitive family). */
function fromBody(op: string, d: OperationDefinitionParameter, p: ParametersParameter): GivenParameter {
  const name = d.name as string;
  const type = d.type as string;
  const valueKeys = Object.keys(p).filter((k) => k.startsWith('value'));
  const hasResource = p.resource !== undefined;
  const hasPart = p.part !== undefined;
  if (valueKeys.length + (hasResource ? 1 : 0) + (hasPart ? 1 : 0) > 1) throw FhirError.badRequest(`Parameter '${name}' of ${op} has more than one value`, [name]);
  if (d.part?.length) {
    if (!hasPart) throw FhirError.badRequest(`Parameter '${name}' of ${op} needs parts`, [name]);
    return { parameter: p };
  }
  if (!type) return { parameter: p };
  if (isResourceType(type)) {
    if (!hasResource || typeof p.resource !== 'object' || !p.resource || Array.isArray(p.resource)) {
      throw FhirError.badRequest(`Parameter '${name}' of ${op} needs a resource`, [name]);
    }
    if (type !== 'Resource' && p.resource.resourceType !== type) throw FhirError.badRequest(`Parameter '${name}' of ${op} needs a ${type} resource`, [name]);
    return { parameter: p };
  }
  const key = valueKeys[0];
  // `valueMeta` -> Meta, `valuePositiveInt` -> positiveInt: data types are upper-case, primitives lower.
  const givenType = key === undefined ? undefined : PRIMITIVES[key.charAt(5).toLowerCase() + key.slice(6)] ? key.charAt(5).toLowerCase() + key.slice(6) : key.slice(5);
  const check = PRIMITIVES[type];
  if (givenType === undefined || (givenType !== type && (!check || !FAMILY[type] || FAMILY[givenType] !== FAMILY[type]))) {
    throw FhirError.badRequest(`Parameter '${name}' of ${op} needs a value${ucFirst(type)}`, [name]);
  }
  const value = (p as unknown as Record<string, unknown>)[key];
  if (!check) {
    if (!value || typeof value !== 'object' || Array.isArray(value)) throw FhirError.badRequest(`Parameter '${name}' of ${op} needs a value${ucFirst(type)}`, [name]);
    return { parameter: p };
  }
  const text = typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean' ? String(value) : undefined;
  const jsonOk = type === 'boolean' ? typeof value === 'boolean' : FAMILY[type] === 'integer' || type === 'decimal' ? typeof value === 'number' : typeof value === 'string';
  if (text === undefined || !jsonOk || !check(text)) throw badValue(op, name, type, text ?? typeof value);
  return { parameter: p, text };
}

function typed(type: string, text: string): string | number | boolean {
  if (type === 'boolean') return text === 'true';
  if (FAMILY[type] === 'integer' || type === 'decimal') return Number(text);
  return text;
}

function badValue(op: string, name: string, type: string, text: string): FhirError {
  return FhirError.badRequest(`Parameter '${name}' of ${op} must be a FHIR ${type}, not '${text.slice(0, 40)}'`, [name]);
}

/** `Resource`, `DomainResource` or a resource type name (types that are not data types start upper-case). */
function isResourceType(type: string): boolean {
  return /^[A-Z]/.test(type) && !DATA_TYPES.has(type);
}

/** R4 complex data types an operation parameter may have (datatypes.html, metadatatypes.html). */
const DATA_TYPES = new Set([
  'Address', 'Age', 'Annotation', 'Attachment', 'CodeableConcept', 'Coding', 'ContactDetail', 'ContactPoint', 'Contributor', 'Count',
  'DataRequirement', 'Distance', 'Dosage', 'Duration', 'Element', 'Expression', 'Extension', 'HumanName', 'Identifier', 'Meta', 'Money',
  'ParameterDefinition', 'Period', 'Quantity', 'Range', 'Ratio', 'Reference', 'RelatedArtifact', 'SampledData', 'Signature', 'Timing',
  'TriggerDefinition', 'UsageContext', 'Any',
]);

export function isParameters(body: unknown): boolean {
  return !!body && typeof body === 'object' && (body as { resourceType?: unknown }).resourceType === 'Parameters';
}

export function isEmpty(body: unknown): boolean {
  return body === undefined || body === null || (typeof body === 'object' && Object.keys(body).length === 0);
}
