import type { Patient } from '@medplum/fhirtypes';
import { SeededRandom } from '../synthetic/synthetic-data.generator';

/**
 * A labelled test population for identity matching (docs/identity.md, Evaluation): persons
 * registered at several organizations with realistic variation, plus look-alikes who are different
 * people (twins; a parent and child of one name). Deterministic for a seed. `person` is the label:
 * records with the same `person` are one real person.
 */
export interface LabelledPatient {
  person: string;
  org: number;
  patient: Patient;
}

export interface PopulationOptions {
  seed: number;
  persons: number;
  twinPairs: number;
  parentChildPairs: number;
  orgs: number;
  /** Share of records (other than a person's first) with a typo in a name. */
  typoRate?: number;
  /** Share of records with the birth day and month transposed (where both are ≤ 12). */
  transposeRate?: number;
}

export const SSN_SYSTEM = 'http://hl7.org/fhir/sid/us-ssn';

const FAMILY = ['Müller', 'Smith', 'García', 'Nguyen', 'Kowalski', 'Dubois', "O'Brien", 'Rossi', 'Novák', 'Jensen', 'Johnson', 'Williams', 'Brown', 'Jones', 'Miller', 'Davis', 'Martínez', 'Hernández', 'López', 'Wilson', 'Anderson', 'Taylor', 'Thomas', 'Moore', 'Jackson', 'Martin', 'Lee', 'Pérez', 'Thompson', 'White', 'Harris', 'Sánchez', 'Clark', 'Ramírez', 'Lewis', 'Robinson', 'Walker', 'Young', 'Allen', 'King', 'Wright', 'Scott', 'Torres', 'Hill', 'Flores', 'Green', 'Adams', 'Nelson', 'Baker', 'Hall', 'Schmidt', 'Schneider', 'Fischer', 'Weber', 'Meyer', 'Wagner', 'Becker', 'Schulz', 'Hoffmann', 'Koch'];
const FEMALE = ['Margaret', 'Elizabeth', 'Catherine', 'Patricia', 'Jennifer', 'Susan', 'Anna', 'Victoria', 'Isabella', 'Kimberly', 'Maria', 'Sofia', 'Helena', 'Laura', 'Emma', 'Olivia', 'Charlotte', 'Amelia', 'Grace', 'Chloe'];
const MALE = ['William', 'Robert', 'James', 'John', 'Michael', 'Thomas', 'Richard', 'Joseph', 'Daniel', 'Matthew', 'Anthony', 'Christopher', 'Edward', 'Stephen', 'Samuel', 'Benjamin', 'Nicholas', 'Andrew', 'David', 'Gregory'];
const NICK: Record<string, string> = { William: 'Bill', Robert: 'Bob', James: 'Jim', John: 'Jack', Michael: 'Mike', Thomas: 'Tom', Richard: 'Rick', Daniel: 'Danny', Matthew: 'Matt', Anthony: 'Tony', Christopher: 'Chris', Edward: 'Ted', Stephen: 'Steve', Samuel: 'Sam', Benjamin: 'Ben', Nicholas: 'Nick', Andrew: 'Andy', David: 'Dave', Margaret: 'Peggy', Elizabeth: 'Liz', Catherine: 'Kate', Patricia: 'Patty', Jennifer: 'Jenny', Susan: 'Sue', Victoria: 'Vicky', Isabella: 'Bella', Kimberly: 'Kim' };
const STREETS = ['Main', 'Oak', 'Pine', 'Maple', 'Cedar', 'Elm', 'Washington', 'Lake', 'Hill', 'Park', 'River', 'Church', 'Mill', 'Spring', 'Center'];
const SUFFIX: [string, string][] = [['Street', 'St.'], ['Avenue', 'Ave'], ['Road', 'Rd'], ['Drive', 'Dr.'], ['Lane', 'Ln']];

interface Truth {
  family: string;
  maiden?: string;
  given: string;
  sex: 'male' | 'female';
  birthDate: string;
  street: [number, string, [string, string]];
  postal: string;
  phone: string;
  email?: string;
  ssn?: string;
}

/** One typo: two adjacent letters swapped, or one letter replaced. */
function typo(rnd: SeededRandom, word: string): string {
  if (word.length < 4) return word;
  const i = rnd.int(1, word.length - 2);
  if (rnd.next() < 0.5) return word.slice(0, i) + word[i + 1] + word[i] + word.slice(i + 2);
  const letter = 'aeiourstnl'[rnd.int(0, 9)];
  return word.slice(0, i) + (letter === word[i] ? 'x' : letter) + word.slice(i + 1);
}

function date(rnd: SeededRandom, fromYear: number, toYear: number): string {
  const y = rnd.int(fromYear, toYear);
  const m = rnd.int(1, 12);
  const d = rnd.int(1, 28);
  return `${y}-${String(m).padStart(2, '0')}-${String(d).padStart(2, '0')}`;
}

export function identityPopulation(options: PopulationOptions): LabelledPatient[] {
  const rnd = new SeededRandom(options.seed);
  const typoRate = options.typoRate ?? 0.1;
  const transposeRate = options.transposeRate ?? 0.05;
  const out: LabelledPatient[] = [];
  let serial = 0;

  const truth = (over: Partial<Truth> = {}): Truth => {
    const sex = over.sex ?? (rnd.next() < 0.5 ? 'female' : 'male');
    const n = serial++;
    return {
      family: rnd.pick(FAMILY),
      given: rnd.pick(sex === 'female' ? FEMALE : MALE),
      sex,
      birthDate: date(rnd, 1935, 2015),
      street: [rnd.int(1, 9999), rnd.pick(STREETS), rnd.pick(SUFFIX)],
      postal: String(rnd.int(10000, 99999)),
      phone: `555${String(rnd.int(0, 9999999)).padStart(7, '0')}`,
      email: rnd.next() < 0.5 ? `p${options.seed}x${n}@mail.example.org` : undefined,
      ssn: `${options.seed}-${String(n).padStart(6, '0')}`,
      ...over,
    };
  };

  /** One organization's record of a person: the first is clean, later ones vary. */
  const record = (t: Truth, person: string, org: number, clean: boolean, mrn: number): LabelledPatient => {
    let family = t.family;
    let given = t.given;
    let birthDate = t.birthDate;
    const names: Patient['name'] = [];
    if (!clean && rnd.next() < typoRate) {
      if (rnd.next() < 0.5) family = typo(rnd, family);
      else given = typo(rnd, given);
    }
    if (!clean && NICK[given] && rnd.next() < 0.2) given = NICK[given];
    const [y, m, d] = birthDate.split('-');
    if (!clean && Number(d) <= 12 && m !== d && rnd.next() < transposeRate) birthDate = `${y}-${d}-${m}`;
    // A married name: this organization knows the current name, often with the maiden name too.
    if (t.maiden && !clean) {
      names.push({ use: 'official', family, given: [given] });
      if (rnd.next() < 0.5) names.push({ use: 'maiden', family: t.maiden });
    } else {
      names.push({ use: 'official', family: t.maiden && clean ? t.maiden : family, given: [given] });
    }
    const [no, street, [long, short]] = t.street;
    const telecom: NonNullable<Patient['telecom']> = [];
    if (rnd.next() < 0.8) telecom.push({ system: 'phone', value: rnd.next() < 0.5 ? `(${t.phone.slice(0, 3)}) ${t.phone.slice(3, 6)}-${t.phone.slice(6)}` : t.phone });
    if (t.email && rnd.next() < 0.7) telecom.push({ system: 'email', value: rnd.next() < 0.5 ? t.email.toUpperCase() : t.email });
    const identifier: NonNullable<Patient['identifier']> = [{ system: `http://org-${org}.example.org/mrn`, value: `MRN-${options.seed}-${mrn}` }];
    // Missing identifiers: a third of records carry no national id.
    if (t.ssn && rnd.next() < 0.67) identifier.push({ system: SSN_SYSTEM, value: t.ssn });
    const patient: Patient = {
      resourceType: 'Patient',
      identifier,
      name: names,
      gender: t.sex,
      birthDate,
      address: rnd.next() < 0.85 ? [{ line: [`${no} ${street} ${rnd.next() < 0.5 ? long : short}`], postalCode: t.postal }] : undefined,
      ...(telecom.length ? { telecom } : {}),
    };
    return { person, org, patient };
  };

  const register = (t: Truth, person: string, orgs: number[]): void => {
    orgs.forEach((org, i) => out.push(record(t, person, org, i === 0, out.length)));
  };
  const allOrgs = Array.from({ length: options.orgs }, (_, i) => i);

  for (let p = 0; p < options.persons; p++) {
    const t = truth();
    // One woman in ten changed her family name after her first registration.
    if (t.sex === 'female' && rnd.next() < 0.1) {
      t.maiden = t.family;
      t.family = rnd.pick(FAMILY);
    }
    register(t, `person-${p}`, allOrgs);
  }
  for (let p = 0; p < options.twinPairs; p++) {
    const a = truth();
    const bSex = rnd.next() < 0.5 ? a.sex : a.sex === 'male' ? 'female' : 'male';
    let bGiven = rnd.pick(bSex === 'female' ? FEMALE : MALE);
    while (bGiven === a.given) bGiven = rnd.pick(bSex === 'female' ? FEMALE : MALE);
    const b: Truth = { ...a, sex: bSex, given: bGiven, ssn: `${a.ssn}-twin`, email: undefined };
    register(a, `twin-${p}-a`, allOrgs.slice(0, 2));
    register(b, `twin-${p}-b`, allOrgs.slice(1, 3));
  }
  for (let p = 0; p < options.parentChildPairs; p++) {
    const parent = truth({ birthDate: date(rnd, 1950, 1975) });
    const child: Truth = { ...parent, birthDate: date(rnd, 1995, 2010), ssn: `${parent.ssn}-child`, email: undefined };
    register(parent, `parent-${p}`, allOrgs.slice(0, 2));
    register(child, `child-${p}`, allOrgs.slice(1, 3));
  }
  return out;
}
