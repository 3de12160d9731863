import type { ElementDefinition, Resource, StructureDefinition } from '@medplum/fhirtypes';
import { FhirDefinitions } from '../fhir/definitions/fhir-definitions';
import { TerminologyBindingValidator } from '../fhir/validation/terminology-binding.validator';

/** The 144 storable R4 resource types, sorted. */
export const STORABLE_RESOURCE_TYPES: readonly string[] = FhirDefinitions.get().storableTypes;

const PRIMITIVES: Record<string, unknown> = {
  boolean: true,
  integer: 1,
  positiveInt: 1,
  unsignedInt: 0,
  decimal: 1.5,
  string: 'example',
  markdown: 'example',
  code: 'example',
  id: 'example',
  uri: 'http://example.org/fhir/example',
  url: 'http://example.org/fhir/example',
  canonical: 'http://example.org/fhir/example',
  oid: 'urn:oid:1.2.3.4',
  uuid: 'urn:uuid:a0f8f4a4-6d8a-4d79-9a5a-2b5b1c1d0e01',
  date: '2020-01-01',
  dateTime: '2020-01-01T10:00:00Z',
  instant: '2020-01-01T10:00:00.000Z',
  time: '10:00:00',
  base64Binary: 'AAAA',
  xhtml: '<div xmlns="http://www.w3.org/1999/xhtml">example</div>',
};

/** Data types whose required children alone would leave them empty (ele-1) or break an invariant. */
const DATA_TYPE_EXAMPLES: Record<string, unknown> = {
  Identifier: { system: 'http://example.org/ids', value: 'example' },
  HumanName: { family: 'Example' },
  Address: { city: 'Example' },
  ContactPoint: { system: 'phone', value: '555-0100' },
  Period: { start: '2020-01-01' },
  Quantity: { value: 1, unit: 'mg', system: 'http://unitsofmeasure.org', code: 'mg' },
  Duration: { value: 1, unit: 'd', system: 'http://unitsofmeasure.org', code: 'd' },
  Age: { value: 1, unit: 'a', system: 'http://unitsofmeasure.org', code: 'a' },
  Distance: { value: 1, unit: 'm', system: 'http://unitsofmeasure.org', code: 'm' },
  Count: { value: 1, system: 'http://unitsofmeasure.org', code: '1' },
  SimpleQuantity: { value: 1 },
  Money: { value: 1, currency: 'EUR' },
  Range: { low: { value: 1 } },
  Ratio: { numerator: { value: 1 }, denominator: { value: 2 } },
  Attachment: { contentType: 'text/plain', data: 'AAAA' },
  Reference: { display: 'example' },
  Annotation: { text: 'example' },
  Timing: { event: ['2020-01-01T10:00:00Z'] },
  Dosage: { text: 'example' },
  Meta: { tag: [{ system: 'http://example.org/tags', code: 'example' }] },
  Expression: { language: 'text/fhirpath', expression: 'true' },
  ContactDetail: { name: 'example' },
  Signature: {
    type: [{ system: 'urn:iso-astm:E1762-95:2013', code: '1.2.840.10065.1.12.1.1' }],
    when: '2020-01-01T10:00:00Z',
    who: { display: 'example' },
  },
  SampledData: { origin: { value: 0 }, period: 1, dimensions: 1 },
};

let terminology: TerminologyBindingValidator | undefined;

/**
 * Builds a small valid instance of any storable type from its R4 StructureDefinition: every
 * element with min >= 1 at any depth, with values of the right format and codes from required
 * bindings. `variant` changes the narrative (or an optional element) so an update differs.
 */
export function buildMinimalInstance(resourceType: string, variant = 0): Resource {
  const defs = FhirDefinitions.get();
  const sd = defs.structureDefinition(`http://hl7.org/fhir/StructureDefinition/${resourceType}`);
  if (!sd?.snapshot?.element || !defs.isStorable(resourceType)) throw new Error(`Not a storable resource type: ${resourceType}`);
  const instance = { resourceType, ...buildChildren(sd, resourceType, 0) } as Record<string, unknown>;
  Object.assign(instance, INVARIANT_FIXES[resourceType]?.(instance) ?? {});
  if (resourceType === 'Binary') {
    instance.data = Buffer.from(`variant ${variant}`).toString('base64');
  } else if (resourceType === 'Bundle') {
    instance.identifier = { system: 'http://example.org/bundles', value: `variant-${variant}` };
  } else {
    instance.text = { status: 'generated', div: `<div xmlns="http://www.w3.org/1999/xhtml">variant ${variant}</div>` };
  }
  return instance as unknown as Resource;
}

/** Some resources have invariants (beyond cardinality) that the minimal instance must satisfy. */
const INVARIANT_FIXES: Record<string, (r: Record<string, unknown>) => Record<string, unknown>> = {
  AllergyIntolerance: () => ({
    clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical', code: 'active' }] },
  }),
  Appointment: (r) => ({ participant: (r.participant as object[]).map((p) => ({ ...p, actor: { display: 'example' } })) }),
  AppointmentResponse: () => ({ actor: { display: 'example' } }),
  Bundle: () => ({ type: 'collection' }),
  CapabilityStatement: () => ({ rest: [{ mode: 'server' }], software: { name: 'example' }, kind: 'capability' }),
  Consent: () => ({ policyRule: { text: 'example' } }),
  ImmunizationRecommendation: (r) => ({
    recommendation: (r.recommendation as object[]).map((x) => ({ ...x, vaccineCode: [{ text: 'example' }] })),
  }),
  InsurancePlan: () => ({ name: 'example' }),
  Linkage: () => ({
    item: [
      { type: 'source', resource: { display: 'example a' } },
      { type: 'alternate', resource: { display: 'example b' } },
    ],
  }),
  StructureDefinition: () => ({ type: 'Basic', differential: { element: [{ id: 'Basic', path: 'Basic' }] } }),
  TerminologyCapabilities: () => ({ software: { name: 'example' }, kind: 'capability' }),
};

function buildChildren(sd: StructureDefinition, path: string, depth: number): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (depth > 6) return out;
  for (const el of directChildren(sd, path)) {
    if ((el.min ?? 0) < 1) continue;
    const [key, value] = buildElement(sd, el, depth);
    if (value !== undefined) out[key] = el.max === '1' ? value : [value];
  }
  return out;
}

function directChildren(sd: StructureDefinition, path: string): ElementDefinition[] {
  const depth = path.split('.').length + 1;
  return (sd.snapshot?.element ?? []).filter(
    (el) => (el.path as string).startsWith(`${path}.`) && (el.path as string).split('.').length === depth && !el.sliceName,
  );
}

function buildElement(sd: StructureDefinition, el: ElementDefinition, depth: number): [string, unknown] {
  const name = (el.path as string).split('.').pop()!;
  const types = (el.type ?? []).map((t) => t.code as string);
  if (name.endsWith('[x]')) {
    const type = types.find((t) => t === 'string') ?? types.find((t) => t === 'boolean') ?? types[0];
    return [name.replace('[x]', '') + type[0].toUpperCase() + type.slice(1), valueOf(sd, el, type, depth)];
  }
  return [name, valueOf(sd, el, types[0], depth)];
}

function valueOf(sd: StructureDefinition, el: ElementDefinition, type: string | undefined, depth: number): unknown {
  const bound = el.binding?.strength === 'required' && el.binding.valueSet ? exampleCode(el.binding.valueSet) : undefined;
  if (el.contentReference || type === 'BackboneElement' || type === 'Element' || !type) {
    const path = el.contentReference ? el.contentReference.replace(/^#/, '') : (el.path as string);
    const children = buildChildren(sd, path, depth + 1);
    if (Object.keys(children).length) return children;
    const optional = directChildren(sd, path).find((c) => (c.type ?? []).some((t) => t.code === 'string'));
    return optional ? { [(optional.path as string).split('.').pop()!.replace('[x]', 'String')]: 'example' } : { id: 'example' };
  }
  if (type === 'code' || type === 'string' || type === 'uri') {
    if (bound) return bound.code;
  }
  if (type === 'Coding') return bound ? { system: bound.system, code: bound.code } : { system: 'http://example.org/codes', code: 'example' };
  if (type === 'CodeableConcept') {
    return bound ? { coding: [{ system: bound.system, code: bound.code }] } : { text: 'example' };
  }
  if (type in PRIMITIVES) return PRIMITIVES[type];
  if (type in DATA_TYPE_EXAMPLES) return DATA_TYPE_EXAMPLES[type];
  const typeSd = FhirDefinitions.get().structureDefinition(`http://hl7.org/fhir/StructureDefinition/${type}`);
  if (typeSd?.snapshot?.element) {
    const children = buildChildren(typeSd, type, depth + 1);
    if (Object.keys(children).length) return children;
  }
  return { id: 'example' };
}

function exampleCode(valueSet: string): { system?: string; code: string } | undefined {
  terminology ??= new TerminologyBindingValidator();
  return terminology.exampleCode(valueSet);
}
