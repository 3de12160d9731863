import type { Demographics } from './demographics';
import { transposedBirthDate } from './demographics';
import type { IdentityConfig } from './identity-config';

/** R4 match-grade codes (http://hl7.org/fhir/StructureDefinition/match-grade). */
export type MatchGrade = 'certain' | 'probable' | 'possible' | 'certainly-not';

/** One comparison's contribution: the field, its level, its weight (for review tasks; no values). */
export interface FieldWeight {
  field: 'identifier' | 'family' | 'given' | 'birthDate' | 'sex' | 'contact';
  level: 'agree' | 'partial' | 'transposed' | 'disagree' | 'missing';
  weight: number;
}

export interface MatchScore {
  /** Total Fellegi-Sunter weight (log2 likelihood ratio). */
  weight: number;
  /** The weight scaled into [0, 1] (Bundle.entry.search.score): weight / the most it can be. */
  score: number;
  grade: MatchGrade;
  /** The deterministic rule decided: an identifier of a trusted system with the same value. */
  deterministic: boolean;
  fields: FieldWeight[];
}

/** log2(m/u) for agreement, log2((1-m)/(1-u)) for disagreement (Fellegi & Sunter 1969). */
const agree = (m: number, u: number): number => Math.log2(m / u);
const disagree = (m: number, u: number): number => Math.log2((1 - m) / (1 - u));

/**
 * The m (agreement among true matches) and u (agreement among non-matches) probabilities behind
 * each weight; docs/identity.md gives the table and the reasoning. Rounded to 0.1.
 */
export const WEIGHTS = {
  family: { agree: agree(0.9, 0.01), partial: 3, disagree: disagree(0.9, 0.01) },
  // Given names are rarely different for one person once nicknames are mapped, so a real
  // disagreement weighs heavily: it is what tells twins apart.
  given: { agree: agree(0.9, 0.02), partial: 3, disagree: -8 },
  birthDate: { agree: agree(0.95, 0.0001), transposed: agree(0.03, 0.0001), partial: 4, disagree: disagree(0.98, 0.0001) },
  sex: { agree: agree(0.98, 0.5), disagree: disagree(0.98, 0.5) },
  postalCode: { agree: agree(0.8, 0.01), disagree: disagree(0.8, 0.01) },
  street: { agree: agree(0.7, 0.001), disagree: disagree(0.7, 0.001) },
  phone: { agree: agree(0.7, 0.0001), disagree: disagree(0.7, 0.0001) },
  email: { agree: agree(0.7, 0.0001), disagree: disagree(0.7, 0.0001) },
  /**
   * Address, phone and e-mail are shared by a household (twins, parent and child): they are not
   * independent of each other, so their agreements together count at most this much.
   */
  contactCap: 8,
  /** A trusted identifier system with different values: almost always two people. */
  trustedIdentifierConflict: -12,
} as const;

/** Optimal string alignment distance (Damerau-Levenshtein with adjacent transpositions), capped. */
export function editDistance(a: string, b: string, cap = 3): number {
  if (Math.abs(a.length - b.length) > cap) return cap + 1;
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return Math.min(d[a.length][b.length], cap + 1);
}

/** A typo: one edit (two for long words) between words of four letters or more. */
function nearly(a: string, b: string): boolean {
  const len = Math.min(a.length, b.length);
  if (len < 4) return false;
  return editDistance(a, b) <= (len >= 8 ? 2 : 1);
}

type Level = 'agree' | 'partial' | 'disagree' | 'missing';

function compareWords(a: readonly string[], b: readonly string[], initials: boolean): Level {
  if (!a.length || !b.length) return 'missing';
  if (a.some((x) => b.includes(x))) return 'agree';
  if (a.some((x) => b.some((y) => nearly(x, y)))) return 'partial';
  // An initial against a name that starts with it ("J" and "John").
  if (initials && a.some((x) => b.some((y) => (x.length === 1 || y.length === 1) && x[0] === y[0]))) return 'partial';
  return 'disagree';
}

function compareBirthDate(a?: string, b?: string): 'agree' | 'transposed' | 'partial' | 'disagree' | 'missing' {
  if (!a || !b) return 'missing';
  if (a === b) return 'agree';
  if (transposedBirthDate(a) === b) return 'transposed';
  // One mistyped digit.
  let diff = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) diff++;
  return diff === 1 ? 'partial' : 'disagree';
}

function overlapWeight(a: readonly string[], b: readonly string[], w: { agree: number; disagree: number }): number {
  if (!a.length || !b.length) return 0;
  return a.some((x) => b.includes(x)) ? w.agree : w.disagree;
}

/** The most a pair can weigh (every field agreeing): the denominator of `score`. */
export const MAX_WEIGHT = WEIGHTS.family.agree + WEIGHTS.given.agree + WEIGHTS.birthDate.agree + WEIGHTS.sex.agree + WEIGHTS.contactCap;

/**
 * Scores a pair of normalized demographics (docs/identity.md, Scoring): first the deterministic
 * rule (a trusted identifier system with the same value is certain), then Fellegi-Sunter weights
 * per field, summed, graded by the configured thresholds. Pure: no I/O, no logging.
 */
export function scoreMatch(a: Demographics, b: Demographics, config: Pick<IdentityConfig, 'trustedIdentifierSystems' | 'thresholds'>): MatchScore {
  const fields: FieldWeight[] = [];
  const trusted = (ids: readonly string[]) => ids.filter((i) => config.trustedIdentifierSystems.includes(i.slice(0, i.lastIndexOf('|'))));
  const ta = trusted(a.identifiers);
  const tb = trusted(b.identifiers);
  if (ta.some((i) => tb.includes(i))) {
    fields.push({ field: 'identifier', level: 'agree', weight: 0 });
    return { weight: MAX_WEIGHT, score: 1, grade: 'certain', deterministic: true, fields };
  }
  const systemOf = (i: string) => i.slice(0, i.lastIndexOf('|'));
  if (ta.some((x) => tb.some((y) => systemOf(x) === systemOf(y)))) {
    fields.push({ field: 'identifier', level: 'disagree', weight: WEIGHTS.trustedIdentifierConflict });
  }

  // Family and given names entered in each other's fields count as agreeing (a transposition).
  let family = compareWords(a.family, b.family, false);
  let given = compareWords(a.given, b.given, true);
  if (family !== 'agree' && given !== 'agree' && compareWords(a.family, b.given, false) === 'agree' && compareWords(a.given, b.family, false) === 'agree') {
    family = 'agree';
    given = 'agree';
  }
  fields.push({ field: 'family', level: family, weight: family === 'missing' ? 0 : WEIGHTS.family[family] });
  fields.push({ field: 'given', level: given, weight: given === 'missing' ? 0 : WEIGHTS.given[given] });
  const birth = compareBirthDate(a.birthDate, b.birthDate);
  fields.push({ field: 'birthDate', level: birth, weight: birth === 'missing' ? 0 : WEIGHTS.birthDate[birth] });
  const sex = !a.sex || !b.sex ? 'missing' : a.sex === b.sex ? 'agree' : 'disagree';
  fields.push({ field: 'sex', level: sex, weight: sex === 'missing' ? 0 : WEIGHTS.sex[sex] });
  const contact =
    overlapWeight(a.postalCodes, b.postalCodes, WEIGHTS.postalCode) +
    overlapWeight(a.streets, b.streets, WEIGHTS.street) +
    overlapWeight(a.phones, b.phones, WEIGHTS.phone) +
    overlapWeight(a.emails, b.emails, WEIGHTS.email);
  const contactWeight = Math.min(contact, WEIGHTS.contactCap);
  const hasContact = [a.postalCodes, a.streets, a.phones, a.emails].some((x) => x.length) && [b.postalCodes, b.streets, b.phones, b.emails].some((x) => x.length);
  fields.push({ field: 'contact', level: !hasContact ? 'missing' : contactWeight > 0 ? 'agree' : 'disagree', weight: contactWeight });

  const weight = round(fields.reduce((s, f) => s + f.weight, 0));
  return { weight, score: round(Math.min(1, Math.max(0, weight / MAX_WEIGHT)), 3), grade: gradeOf(weight, config.thresholds), deterministic: false, fields };
}

export function gradeOf(weight: number, t: IdentityConfig['thresholds']): MatchGrade {
  if (weight >= t.upper) return 'certain';
  if (weight >= t.lower) return 'probable';
  if (weight >= t.possible) return 'possible';
  return 'certainly-not';
}

function round(n: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}
