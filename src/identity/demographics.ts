import type { Patient } from '@medplum/fhirtypes';
import nicknames from './nicknames.json';

/**
 * A Patient's demographics in the normalized form matching compares (docs/identity.md): no PHI
 * leaves this shape except into the `patient_demographics` table and the scorer.
 */
export interface Demographics {
  /** Family name words: lower case, accents stripped, hyphenated names split. */
  family: string[];
  /** Given name words, normalized the same way, each nickname replaced by its formal name. */
  given: string[];
  /** YYYY-MM-DD; undefined when the birth date is absent or not a full date. */
  birthDate?: string;
  /** administrative-gender code (`unknown` counts as absent). */
  sex?: string;
  /** Postal codes: upper case, spaces and hyphens removed. */
  postalCodes: string[];
  /** Street lines: lower case, accents and punctuation stripped, common suffixes abbreviated. */
  streets: string[];
  /** Phone numbers: digits only, the last 10 (so `+1 (555) 010-2000` and `5550102000` agree). */
  phones: string[];
  /** E-mail addresses, lower case. */
  emails: string[];
  /** `system|value` of every identifier with both. */
  identifiers: string[];
}

const NICKNAMES: Readonly<Record<string, string>> = Object.fromEntries(Object.entries(nicknames).filter(([k]) => !k.startsWith('_')));

const STREET_WORDS: Readonly<Record<string, string>> = {
  street: 'st',
  avenue: 'ave',
  road: 'rd',
  drive: 'dr',
  lane: 'ln',
  boulevard: 'blvd',
  court: 'ct',
  place: 'pl',
  north: 'n',
  south: 's',
  east: 'e',
  west: 'w',
  apartment: 'apt',
  strasse: 'str',
};

/** Lower case, accents stripped (NFD without combining marks), ß -> ss. */
export function foldText(text: string): string {
  return text.normalize('NFD').replace(/\p{M}/gu, '').replace(/ß/g, 'ss').toLowerCase();
}

/** Words of a name part: folded, split on hyphens, spaces and apostrophes, letters only. */
export function nameWords(text: unknown): string[] {
  if (typeof text !== 'string' || !text) return [];
  return foldText(text)
    .split(/[\s\-‐'’.,]+/u)
    .map((w) => w.replace(/[^a-z]/g, ''))
    .filter((w) => w.length > 0);
}

/** The formal name a nickname stands for (itself otherwise). */
export function formalName(word: string): string {
  return Object.hasOwn(NICKNAMES, word) ? NICKNAMES[word] : word;
}

export function normalizePhone(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  const digits = value.replace(/\D/g, '');
  return digits.length >= 7 ? digits.slice(-10) : undefined;
}

export function normalizePostalCode(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  const code = value.toUpperCase().replace(/[\s-]/g, '');
  return code.length ? code : undefined;
}

export function normalizeStreet(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  const words = foldText(value)
    .replace(/[^a-z0-9\s]/g, ' ')
    .split(/\s+/)
    .filter(Boolean)
    .map((w) => STREET_WORDS[w] ?? w.replace(/strasse$/, 'str'));
  return words.length ? words.join(' ') : undefined;
}

const FULL_DATE_RE = /^\d{4}-\d{2}-\d{2}$/;

function unique(values: (string | undefined)[]): string[] {
  return [...new Set(values.filter((v): v is string => !!v))].sort();
}

/**
 * The normalized demographics of a Patient: every name (official, maiden, nickname uses alike), every
 * address line and postal code, phone and e-mail telecoms, identifiers by system.
 */
export function demographicsOf(patient: Patient): Demographics {
  const names = Array.isArray(patient.name) ? patient.name : [];
  const addresses = Array.isArray(patient.address) ? patient.address : [];
  const telecoms = Array.isArray(patient.telecom) ? patient.telecom : [];
  const identifiers = Array.isArray(patient.identifier) ? patient.identifier : [];
  const birthDate = typeof patient.birthDate === 'string' && FULL_DATE_RE.test(patient.birthDate) ? patient.birthDate : undefined;
  const sex = typeof patient.gender === 'string' && patient.gender !== 'unknown' ? patient.gender : undefined;
  return {
    family: unique(names.flatMap((n) => nameWords(n?.family))),
    given: unique(names.flatMap((n) => (Array.isArray(n?.given) ? n.given : []).flatMap((g) => nameWords(g).map(formalName)))),
    birthDate,
    sex,
    postalCodes: unique(addresses.map((a) => normalizePostalCode(a?.postalCode))),
    streets: unique(addresses.flatMap((a) => (Array.isArray(a?.line) ? a.line : []).map((l) => normalizeStreet(l)))),
    phones: unique(telecoms.filter((t) => t?.system === 'phone' || t?.system === 'sms').map((t) => normalizePhone(t.value))),
    emails: unique(telecoms.filter((t) => t?.system === 'email').map((t) => (typeof t.value === 'string' ? t.value.trim().toLowerCase() || undefined : undefined))),
    identifiers: unique(identifiers.map((i) => (typeof i?.system === 'string' && typeof i.value === 'string' && i.value.trim() ? `${i.system}|${i.value.trim()}` : undefined))),
  };
}

/** The birth date with day and month swapped, when that is a date too (a common keying error). */
export function transposedBirthDate(birthDate: string | undefined): string | undefined {
  if (!birthDate) return undefined;
  const [y, m, d] = birthDate.split('-');
  if (m === d || Number(d) > 12) return undefined;
  const swapped = `${y}-${d}-${m}`;
  const day = new Date(`${swapped}T00:00:00Z`);
  return !Number.isNaN(day.getTime()) && day.toISOString().slice(0, 10) === swapped ? swapped : undefined;
}
