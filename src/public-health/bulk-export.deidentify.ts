import type { Resource } from '@medplum/fhirtypes';

/**
 * HIPAA Safe Harbor de-identification (45 CFR 164.514(b)(2)) of one resource for a de-identified
 * Bulk Data export (docs/public-health.md, "De-identified export"). Pure: the pseudonyms come from
 * the caller (random per export, kept in the database only while the export runs, 164.514(c)).
 */

/** `Type/id` of a relative reference (a version suffix is dropped with the version itself). */
const RELATIVE_REF = /^([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[A-Za-z0-9\-.]{1,64})?$/;
/** A FHIR date, dateTime or instant with more than the year. */
const DATE_VALUE = /^(\d{4})-\d{2}(?:-\d{2})?(?:T[\d:.]+(?:Z|[+-]\d{2}:\d{2})?)?$/;
/** Elements dropped wherever they appear: identifiers, contact points, images, narrative and free text. */
const DROPPED = new Set([
  'identifier',
  'telecom',
  'photo',
  'contact',
  'contained',
  'text',
  'note',
  'comment',
  'description',
  'alias',
  'valueString',
  'valueMarkdown',
  'valueHumanName',
  'valueContactPoint',
  'valueIdentifier',
  'valueAttachment',
  'valueAddress',
  'valueUri',
  'valueUrl',
  'valueBase64Binary',
]);
/** Types whose `name` is a person's (HumanName). */
const PERSON_TYPES = new Set(['Patient', 'Practitioner', 'RelatedPerson', 'Person']);
/** Keys whose string values are codes or canonical URLs, never dates to cut to a year. */
const CODE_KEYS = new Set(['code', 'system', 'version', 'url', 'profile', 'reference', 'id', 'language']);
/** Safe Harbor: ages over 89 (and the dates that tell them) fold into one category, 90 or older. */
const MAX_AGE = 89;
export const AGE_90_OR_OLDER = 'http://hie.example.org/fhir/StructureDefinition/age-90-or-older';

export interface DeidentifyOptions {
  /** Pseudonym of every `Type/id` the resource names (itself and its references). */
  pseudonyms: ReadonlyMap<string, string>;
  /** Three-digit postal-code prefixes that may be kept (each covering more than 20,000 people). */
  zip3Allowed: ReadonlySet<string>;
  /** The year ages are judged in (the export's transaction time). */
  currentYear: number;
}

/** Every `Type/id` a resource names: its own and each relative reference, for the pseudonym look-up. */
export function referencesOf(resource: Resource): string[] {
  const out = new Set<string>([`${resource.resourceType}/${resource.id}`]);
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        if (k === 'reference' && typeof x === 'string') {
          const m = RELATIVE_REF.exec(x);
          if (m) out.add(`${m[1]}/${m[2]}`);
        } else walk(x);
      }
    }
  };
  walk(resource);
  return [...out];
}

export function deidentify(resource: Resource, options: DeidentifyOptions): Resource {
  const type = resource.resourceType;
  const out = clean(resource, options, true) as Record<string, unknown>;
  out.resourceType = type;
  out.id = options.pseudonyms.get(`${type}/${resource.id}`);
  // Only what says how to read the resource is kept: no source, version, tags or last-updated.
  const meta = resource.meta;
  if (meta?.profile || meta?.security) out.meta = { ...(meta.profile ? { profile: meta.profile } : {}), ...(meta.security ? { security: meta.security } : {}) };
  else delete out.meta;
  if (PERSON_TYPES.has(type)) delete out.name;
  if (type === 'Patient') foldBirthDate(out, resource as { birthDate?: string }, options.currentYear);
  return out as unknown as Resource;
}

function clean(value: unknown, options: DeidentifyOptions, root = false): unknown {
  if (Array.isArray(value)) {
    const items = value.map((v) => clean(v, options)).filter((v) => v !== undefined);
    return items.length ? items : undefined;
  }
  if (!value || typeof value !== 'object') return value;
  const input = value as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(input)) {
    if (DROPPED.has(key) || (root && (key === 'meta' || key === 'id'))) continue;
    if (key === 'address' || key === 'valueAddress') {
      const generalized = clean(generalizeAddresses(v, options.zip3Allowed), options);
      if (generalized !== undefined) out[key] = generalized;
      continue;
    }
    if (key === 'reference' && typeof v === 'string') {
      const m = RELATIVE_REF.exec(v);
      // Absolute and contained references could point at identifying data: only relative ones survive, pseudonymized.
      if (m && options.pseudonyms.has(`${m[1]}/${m[2]}`)) out.reference = `${m[1]}/${options.pseudonyms.get(`${m[1]}/${m[2]}`)}`;
      continue;
    }
    // A Reference's display may be a name; a Coding's display is the code's text.
    if (key === 'display' && input.code === undefined) continue;
    // Free-text extensions lose their value above; an extension left without one goes.
    if (key === 'extension' || key === 'modifierExtension') {
      const kept = (Array.isArray(v) ? v : []).map((e) => clean(e, options)).filter((e) => e && typeof e === 'object' && Object.keys(e).some((k) => k.startsWith('value') || k === 'extension'));
      if (kept.length) out[key] = kept;
      continue;
    }
    if (typeof v === 'string' && !CODE_KEYS.has(key)) {
      const m = DATE_VALUE.exec(v);
      out[key] = m ? m[1] : v;
      continue;
    }
    if (key.endsWith('Age') && v && typeof v === 'object' && typeof (v as { value?: unknown }).value === 'number') {
      out[key] = foldAge(v as { value: number; unit?: string; code?: string });
      continue;
    }
    const cleaned = clean(v, options);
    if (cleaned !== undefined) out[key] = cleaned;
  }
  return Object.keys(out).length ? out : undefined;
}

/** Addresses keep the state and country, and the first three postal digits only for allowed prefixes. */
function generalizeAddresses(value: unknown, zip3Allowed: ReadonlySet<string>): unknown {
  const one = (a: unknown): unknown => {
    if (!a || typeof a !== 'object') return undefined;
    const { state, country, postalCode } = a as { state?: string; country?: string; postalCode?: string };
    const zip3 = typeof postalCode === 'string' ? postalCode.replace(/\D/g, '').slice(0, 3) : '';
    const out = { ...(state ? { state } : {}), ...(country ? { country } : {}), ...(zip3.length === 3 && zip3Allowed.has(zip3) ? { postalCode: zip3 } : {}) };
    return Object.keys(out).length ? out : undefined;
  };
  return Array.isArray(value) ? value.map(one) : one(value);
}

/** An Age over 89 years becomes `>= 90 a`. */
function foldAge(age: { value: number; unit?: string; code?: string }): unknown {
  const years = age.code === 'a' || /^(a|yr|year|years)$/i.test(age.unit ?? '');
  return years && age.value > MAX_AGE ? { value: MAX_AGE + 1, comparator: '>=', unit: 'a', system: 'http://unitsofmeasure.org', code: 'a' } : age;
}

/** The birth year of a patient 90 or older would tell the age: it becomes the 90-or-older category. */
function foldBirthDate(out: Record<string, unknown>, original: { birthDate?: string }, currentYear: number): void {
  const year = original.birthDate ? Number(original.birthDate.slice(0, 4)) : undefined;
  if (year === undefined || currentYear - year <= MAX_AGE) return;
  delete out.birthDate;
  out._birthDate = { extension: [{ url: AGE_90_OR_OLDER, valueBoolean: true }] };
}
