import { FhirDefinitions } from '../fhir/definitions/fhir-definitions';

/**
 * Who may read a type outside the Patient compartment (docs/consent.md, "Types outside the Patient
 * compartment"). Rows of these types carry no patient, so patient consent cannot decide them:
 *
 * - `shared`: directory, conformance and knowledge content every authorized client may read
 *   (scopes and sensitive labels still apply).
 * - `custodian`: only the custodian organization, plus what a module registers for the type
 *   (`ReadAccessRegistry.registerTypeRule`). The default for anything that may carry one
 *   organization's business or a person's data without naming a Patient.
 *
 * Every storable type without a Patient-compartment parameter has an entry (a unit test fails
 * otherwise); a type missing here would be judged `custodian` (default deny), never `shared`.
 */
export type TypeAccess = 'shared' | 'custodian';

const SHARED_DIRECTORY = ['Endpoint', 'HealthcareService', 'InsurancePlan', 'Location', 'Organization', 'OrganizationAffiliation', 'Practitioner', 'PractitionerRole', 'Slot'];
const SHARED_CONFORMANCE = [
  'CapabilityStatement',
  'CodeSystem',
  'CompartmentDefinition',
  'ConceptMap',
  'ExampleScenario',
  'GraphDefinition',
  'ImplementationGuide',
  'MessageDefinition',
  'NamingSystem',
  'OperationDefinition',
  'SearchParameter',
  'StructureDefinition',
  'StructureMap',
  'TerminologyCapabilities',
  'TestScript',
  'ValueSet',
];
const SHARED_KNOWLEDGE = [
  'ActivityDefinition',
  'CatalogEntry',
  'ChargeItemDefinition',
  'DeviceDefinition',
  'EffectEvidenceSynthesis',
  'EventDefinition',
  'Evidence',
  'EvidenceVariable',
  'Library',
  'Measure',
  'Medication',
  'MedicationKnowledge',
  'MedicinalProduct',
  'MedicinalProductAuthorization',
  'MedicinalProductContraindication',
  'MedicinalProductIndication',
  'MedicinalProductIngredient',
  'MedicinalProductInteraction',
  'MedicinalProductManufactured',
  'MedicinalProductPackaged',
  'MedicinalProductPharmaceutical',
  'MedicinalProductUndesirableEffect',
  'ObservationDefinition',
  'PlanDefinition',
  'Questionnaire',
  'ResearchDefinition',
  'ResearchElementDefinition',
  'ResearchStudy',
  'RiskEvidenceSynthesis',
  'SpecimenDefinition',
  'Substance',
  'SubstanceNucleicAcid',
  'SubstancePolymer',
  'SubstanceProtein',
  'SubstanceReferenceInformation',
  'SubstanceSourceMaterial',
  'SubstanceSpecification',
];
/**
 * One organization's documents, messages, agreements, money and equipment. Binary: custodian only
 * unless a `securityContext` rule decides (that rule ORs into this one, see docs/consent.md).
 * Subscription: the custodian organization, not the creating client (an organization's clients
 * act for it, and a rotated client must not orphan its subscriptions; no client column is stored).
 */
const CUSTODIAN_ONLY = [
  'Binary',
  'BiologicallyDerivedProduct',
  'Bundle',
  'Contract',
  'Device',
  'DeviceMetric',
  'EnrollmentResponse',
  'GuidanceResponse',
  'Linkage',
  'MessageHeader',
  'PaymentNotice',
  'PaymentReconciliation',
  'Subscription',
  'TestReport',
  'VerificationResult',
];

export const TYPE_ACCESS: ReadonlyMap<string, TypeAccess> = new Map<string, TypeAccess>([
  ...[...SHARED_DIRECTORY, ...SHARED_CONFORMANCE, ...SHARED_KNOWLEDGE].map((t) => [t, 'shared'] as const),
  ...CUSTODIAN_ONLY.map((t) => [t, 'custodian'] as const),
]);

/** Storable types no Patient-compartment parameter covers (Patient itself is its own compartment). */
export function typesOutsidePatientCompartment(definitions = FhirDefinitions.get()): string[] {
  const inCompartment = new Set(definitions.patientCompartmentTypes());
  return definitions.storableTypes.filter((t) => t !== 'Patient' && !inCompartment.has(t));
}

/** The rule a type outside the Patient compartment falls under (`custodian` when the table has none). */
export function typeAccessOf(resourceType: string): TypeAccess {
  return TYPE_ACCESS.get(resourceType) ?? 'custodian';
}

let restricted: string[] | undefined;

/** Types outside the Patient compartment that are not `shared`: judged by custodian and module rules. */
export function restrictedTypes(): readonly string[] {
  restricted ??= typesOutsidePatientCompartment().filter((t) => typeAccessOf(t) !== 'shared');
  return restricted;
}

/**
 * A module's type rule may only widen a custodian-only type: on a `shared` type it would add
 * nothing, and on a type of the Patient compartment patient consent decides (a referral's Task is
 * opened through a read-access contributor). Refused at start rather than silently ignored.
 */
export function misplacedTypeRules(rulesByType: ReadonlyMap<string, readonly { name: string }[]>): string[] {
  const restrictedSet = new Set(restrictedTypes());
  return [...rulesByType]
    .filter(([type]) => !restrictedSet.has(type))
    .flatMap(([type, rules]) => rules.map((r) => `${r.name}: ${type} is ${TYPE_ACCESS.get(type) === 'shared' ? 'shared' : 'not a custodian-only type'}`));
}
