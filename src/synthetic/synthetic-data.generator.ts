import type {
  Bundle,
  Condition,
  Coverage,
  Encounter,
  Immunization,
  Observation,
  Organization,
  Patient,
  Practitioner,
  Resource,
} from '@medplum/fhirtypes';

export interface SyntheticOptions {
  seed: number;
  patients: number;
  organizations?: number;
  practitioners?: number;
  startYear?: number;
  endYear?: number;
  /** Prefix of every id, so tests can make disjoint data sets. */
  idPrefix?: string;
}

export const PERSON_ID_SYSTEM = 'http://hie.example.org/fhir/sid/person-id';
export const DISTRICTS = ['North', 'South', 'East', 'West', 'Central', 'Harbour'] as const;

const FAMILY = ['Müller', 'Smith', 'García', 'Ångström', 'Çelik', 'Nguyen', 'Kowalski', 'Dubois', "O'Brien", 'Rossi', 'Novák', 'Jensen'];
const GIVEN = ['José', 'Zoë', 'Anna', 'Lena', 'Mohammed', 'Chloé', 'Björn', 'Ines', 'Liam', 'Sofia', 'Noah', 'Amélie', 'Jan', 'Maria'];
const CITIES: Record<(typeof DISTRICTS)[number], string> = {
  North: 'Northfield',
  South: 'Southport',
  East: 'Eastwick',
  West: 'Westbury',
  Central: 'Midtown',
  Harbour: 'Bayside',
};
const GENDERS = ['female', 'male', 'female', 'male', 'other', 'unknown'] as const;

/** LOINC observations with UCUM units: code, display, unit, low, high, category. */
const VITALS: [string, string, string, number, number, string][] = [
  ['8867-4', 'Heart rate', '/min', 50, 110, 'vital-signs'],
  ['29463-7', 'Body weight', 'kg', 3, 130, 'vital-signs'],
  ['8310-5', 'Body temperature', 'Cel', 35.5, 39.5, 'vital-signs'],
  ['2339-0', 'Glucose [Mass/volume] in Blood', 'mg/dL', 60, 250, 'laboratory'],
  ['718-7', 'Hemoglobin [Mass/volume] in Blood', 'g/dL', 8, 18, 'laboratory'],
];
const CONDITIONS: [string, string][] = [
  ['44054006', 'Diabetes mellitus type 2'],
  ['38341003', 'Hypertensive disorder'],
  ['195662009', 'Acute viral pharyngitis'],
  ['840539006', 'Disease caused by SARS-CoV-2'],
  ['10509002', 'Acute bronchitis'],
];
const VACCINES: [string, string][] = [
  ['08', 'Hep B, adolescent or pediatric'],
  ['140', 'Influenza, seasonal, injectable, preservative free'],
  ['207', 'COVID-19, mRNA, LNP-S, PF, 100 mcg/0.5mL dose'],
  ['208', 'COVID-19, mRNA, LNP-S, PF, 30 mcg/0.3 mL dose'],
  ['03', 'MMR'],
];
const ENCOUNTER_CLASSES: [string, string][] = [
  ['AMB', 'ambulatory'],
  ['IMP', 'inpatient encounter'],
  ['EMER', 'emergency'],
];

/** mulberry32: a small, fast, seedable PRNG; the same seed gives the same data on every machine. */
export class SeededRandom {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)];
  }
}

/**
 * Deterministic synthetic FHIR R4 data for tests and benchmarks: hospitals and payers,
 * practitioners, and per patient Encounters, Observations (LOINC, UCUM), Conditions (SNOMED CT),
 * Immunizations (CVX) and Coverage, spread over the configured years.
 */
export class SyntheticDataGenerator {
  private readonly prefix: string;
  private readonly orgCount: number;
  private readonly practitionerCount: number;
  private readonly startYear: number;
  private readonly endYear: number;

  constructor(private readonly options: SyntheticOptions) {
    this.prefix = options.idPrefix ?? 'syn';
    this.orgCount = options.organizations ?? 3;
    this.practitionerCount = options.practitioners ?? 5;
    this.startYear = options.startYear ?? 2015;
    this.endYear = options.endYear ?? 2025;
  }

  hospitalId(n: number): string {
    return `${this.prefix}-org-${n}`;
  }
  payerId(n: number): string {
    return `${this.prefix}-payer-${n}`;
  }
  practitionerId(n: number): string {
    return `${this.prefix}-pract-${n}`;
  }
  patientId(n: number): string {
    return `${this.prefix}-pat-${n}`;
  }

  *resources(): Generator<Resource> {
    yield* this.directory();
    for (let p = 0; p < this.options.patients; p++) yield* this.patientRecord(p);
  }

  *transactionBundles(): Generator<Bundle> {
    yield toTransaction([...this.directory()]);
    for (let p = 0; p < this.options.patients; p++) yield toTransaction([...this.patientRecord(p)]);
  }

  private *directory(): Generator<Resource> {
    const rnd = new SeededRandom(this.options.seed);
    for (let o = 0; o < this.orgCount; o++) {
      const district = DISTRICTS[o % DISTRICTS.length];
      const org: Organization = {
        resourceType: 'Organization',
        id: this.hospitalId(o),
        identifier: [{ system: 'http://hl7.org/fhir/sid/us-npi', value: String(1000000000 + this.options.seed * 100 + o) }],
        active: true,
        type: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/organization-type', code: 'prov', display: 'Healthcare Provider' }] }],
        name: `${CITIES[district]} General Hospital ${o + 1}`,
        address: [{ line: [`${rnd.int(1, 999)} Hospital Road`], city: CITIES[district], district, postalCode: `${10000 + o}` }],
      };
      yield org;
    }
    for (let o = 0; o < 2; o++) {
      yield {
        resourceType: 'Organization',
        id: this.payerId(o),
        identifier: [{ system: 'http://hie.example.org/fhir/sid/payer-id', value: `PAYER-${o}` }],
        active: true,
        type: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/organization-type', code: 'pay', display: 'Payer' }] }],
        name: o === 0 ? 'Regional Health Insurance' : 'Mutual Insurance Fund',
      } satisfies Organization;
    }
    for (let n = 0; n < this.practitionerCount; n++) {
      const practitioner: Practitioner = {
        resourceType: 'Practitioner',
        id: this.practitionerId(n),
        identifier: [{ system: 'http://hl7.org/fhir/sid/us-npi', value: String(2000000000 + this.options.seed * 100 + n) }],
        active: true,
        name: [{ family: rnd.pick(FAMILY), given: [rnd.pick(GIVEN)], prefix: ['Dr.'] }],
      };
      yield practitioner;
    }
  }

  private *patientRecord(p: number): Generator<Resource> {
    // Each patient has its own stream, so patient n is the same whatever the patient count.
    const rnd = new SeededRandom(this.options.seed * 1_000_003 + p * 7919 + 1);
    const patientId = this.patientId(p);
    const hospital = this.hospitalId(p % this.orgCount);
    const district = rnd.pick(DISTRICTS);
    const birthYear = rnd.int(1930, this.endYear - 1);
    const deceased = rnd.next() < 0.05;
    const givenCount = rnd.int(1, 3);
    const patient: Patient = {
      resourceType: 'Patient',
      id: patientId,
      identifier: [
        { system: `http://hospital-${p % this.orgCount}.example.org/mrn`, value: `MRN-${this.options.seed}-${p}`, type: mrType('MR') },
        { system: PERSON_ID_SYSTEM, value: `P${String(this.options.seed).padStart(3, '0')}${String(p).padStart(7, '0')}` },
        ...(rnd.next() < 0.4 ? [{ system: 'urn:oid:2.16.840.1.113883.4.3.25', value: `S${rnd.int(10000000, 99999999)}`, type: mrType('DL') }] : []),
      ],
      active: true,
      name: [
        {
          use: 'official',
          family: rnd.pick(FAMILY),
          given: Array.from({ length: givenCount }, () => rnd.pick(GIVEN)),
        },
      ],
      telecom: [{ system: 'phone', value: `555-${String(rnd.int(0, 9999)).padStart(4, '0')}`, use: 'home' }],
      gender: rnd.pick(GENDERS),
      birthDate: `${birthYear}-${pad(rnd.int(1, 12))}-${pad(rnd.int(1, 28))}`,
      address: [
        {
          use: 'home',
          line: [`${rnd.int(1, 300)} ${rnd.pick(['Oak', 'Elm', 'Birch', 'Linden'])} Street`],
          city: CITIES[district],
          district,
          state: 'RS',
          postalCode: `${20000 + rnd.int(0, 999)}`,
          country: 'XX',
        },
      ],
      managingOrganization: { reference: `Organization/${hospital}` },
      ...(deceased ? { deceasedDateTime: `${this.endYear}-01-15T08:00:00Z` } : {}),
    };
    yield patient;

    const firstYear = Math.max(this.startYear, birthYear);
    const encounters = rnd.int(2, 6);
    for (let e = 0; e < encounters; e++) {
      const encounterId = `${patientId}-enc-${e}`;
      const start = dateIn(rnd, firstYear, this.endYear);
      const [classCode, classDisplay] = rnd.pick(ENCOUNTER_CLASSES);
      const encounter: Encounter = {
        resourceType: 'Encounter',
        id: encounterId,
        status: 'finished',
        class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: classCode, display: classDisplay },
        subject: { reference: `Patient/${patientId}` },
        participant: [{ individual: { reference: `Practitioner/${this.practitionerId(rnd.int(0, this.practitionerCount - 1))}` } }],
        period: { start: `${start}T09:00:00Z`, end: `${start}T10:30:00Z` },
        serviceProvider: { reference: `Organization/${hospital}` },
      };
      yield encounter;
      const observations = rnd.int(3, 10);
      for (let o = 0; o < observations; o++) {
        const [code, display, unit, low, high, category] = rnd.pick(VITALS);
        const observation: Observation = {
          resourceType: 'Observation',
          id: `${encounterId}-obs-${o}`,
          status: 'final',
          category: [
            { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: category }] },
          ],
          code: { coding: [{ system: 'http://loinc.org', code, display }], text: display },
          subject: { reference: `Patient/${patientId}` },
          encounter: { reference: `Encounter/${encounterId}` },
          effectiveDateTime: `${start}T09:${pad(rnd.int(0, 59))}:00Z`,
          valueQuantity: { value: round(low + rnd.next() * (high - low)), unit, system: 'http://unitsofmeasure.org', code: unit },
        };
        yield observation;
      }
      if (rnd.next() < 0.3) {
        yield this.bloodPressure(rnd, `${encounterId}-bp`, patientId, encounterId, start);
      }
      if (rnd.next() < 0.4) {
        const [code, display] = rnd.pick(CONDITIONS);
        const condition: Condition = {
          resourceType: 'Condition',
          id: `${encounterId}-cond`,
          clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-clinical', code: rnd.next() < 0.6 ? 'active' : 'resolved' }] },
          verificationStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-ver-status', code: 'confirmed' }] },
          code: { coding: [{ system: 'http://snomed.info/sct', code, display }], text: display },
          subject: { reference: `Patient/${patientId}` },
          encounter: { reference: `Encounter/${encounterId}` },
          onsetDateTime: `${start}T09:00:00Z`,
          recordedDate: `${start}T10:00:00Z`,
        };
        yield condition;
      }
    }
    const immunizations = rnd.int(0, 4);
    for (let i = 0; i < immunizations; i++) {
      const [code, display] = rnd.pick(VACCINES);
      const immunization: Immunization = {
        resourceType: 'Immunization',
        id: `${patientId}-imm-${i}`,
        status: 'completed',
        vaccineCode: { coding: [{ system: 'http://hl7.org/fhir/sid/cvx', code, display }], text: display },
        patient: { reference: `Patient/${patientId}` },
        occurrenceDateTime: `${dateIn(rnd, firstYear, this.endYear)}T11:00:00Z`,
        primarySource: true,
      };
      yield immunization;
    }
    if (rnd.next() < 0.85) {
      const payer = this.payerId(rnd.int(0, 1));
      const from = rnd.int(firstYear, this.endYear);
      const coverage: Coverage = {
        resourceType: 'Coverage',
        id: `${patientId}-cov`,
        status: 'active',
        type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: rnd.next() < 0.7 ? 'HIP' : 'PUBLICPOL' }] },
        beneficiary: { reference: `Patient/${patientId}` },
        payor: [{ reference: `Organization/${payer}` }],
        period: { start: `${from}-01-01` },
      };
      yield coverage;
    }
  }

  private bloodPressure(rnd: SeededRandom, id: string, patientId: string, encounterId: string, day: string): Observation {
    const component = (code: string, display: string, value: number): NonNullable<Observation['component']>[number] => ({
      code: { coding: [{ system: 'http://loinc.org', code, display }] },
      valueQuantity: { value, unit: 'mm[Hg]', system: 'http://unitsofmeasure.org', code: 'mm[Hg]' },
    });
    return {
      resourceType: 'Observation',
      id,
      status: 'final',
      category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
      code: { coding: [{ system: 'http://loinc.org', code: '85354-9', display: 'Blood pressure panel' }] },
      subject: { reference: `Patient/${patientId}` },
      encounter: { reference: `Encounter/${encounterId}` },
      effectiveDateTime: `${day}T09:15:00Z`,
      component: [component('8480-6', 'Systolic blood pressure', rnd.int(95, 170)), component('8462-4', 'Diastolic blood pressure', rnd.int(55, 105))],
    };
  }
}

function toTransaction(resources: Resource[]): Bundle {
  return {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: resources.map((resource) => ({
      fullUrl: `${resource.resourceType}/${resource.id}`,
      resource,
      request: { method: 'PUT', url: `${resource.resourceType}/${resource.id}` },
    })),
  };
}

function mrType(code: string): Patient['maritalStatus'] {
  return { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code }] };
}

function dateIn(rnd: SeededRandom, fromYear: number, toYear: number): string {
  return `${rnd.int(fromYear, toYear)}-${pad(rnd.int(1, 12))}-${pad(rnd.int(1, 28))}`;
}

function pad(n: number): string {
  return String(n).padStart(2, '0');
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}
