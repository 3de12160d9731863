import { FhirDefinitions } from '../fhir/definitions/fhir-definitions';
import { misplacedTypeRules, restrictedTypes, TYPE_ACCESS, typeAccessOf, typesOutsidePatientCompartment } from './type-access-rules';

/**
 * Every storable type with no Patient-compartment parameter and the rule it falls under. A new type
 * (or a changed CompartmentDefinition) fails here until someone decides its rule: no type becomes
 * readable by every organization by accident. A change of this list is a security review.
 */
const EXPECTED: Record<string, 'shared' | 'custodian'> = {
  ActivityDefinition: 'shared',
  Binary: 'custodian',
  BiologicallyDerivedProduct: 'custodian',
  Bundle: 'custodian',
  CapabilityStatement: 'shared',
  CatalogEntry: 'shared',
  ChargeItemDefinition: 'shared',
  CodeSystem: 'shared',
  CompartmentDefinition: 'shared',
  ConceptMap: 'shared',
  Contract: 'custodian',
  Device: 'custodian',
  DeviceDefinition: 'shared',
  DeviceMetric: 'custodian',
  EffectEvidenceSynthesis: 'shared',
  Endpoint: 'shared',
  EnrollmentResponse: 'custodian',
  EventDefinition: 'shared',
  Evidence: 'shared',
  EvidenceVariable: 'shared',
  ExampleScenario: 'shared',
  GraphDefinition: 'shared',
  GuidanceResponse: 'custodian',
  HealthcareService: 'shared',
  ImplementationGuide: 'shared',
  InsurancePlan: 'shared',
  Library: 'shared',
  Linkage: 'custodian',
  Location: 'shared',
  Measure: 'shared',
  Medication: 'shared',
  MedicationKnowledge: 'shared',
  MedicinalProduct: 'shared',
  MedicinalProductAuthorization: 'shared',
  MedicinalProductContraindication: 'shared',
  MedicinalProductIndication: 'shared',
  MedicinalProductIngredient: 'shared',
  MedicinalProductInteraction: 'shared',
  MedicinalProductManufactured: 'shared',
  MedicinalProductPackaged: 'shared',
  MedicinalProductPharmaceutical: 'shared',
  MedicinalProductUndesirableEffect: 'shared',
  MessageDefinition: 'shared',
  MessageHeader: 'custodian',
  NamingSystem: 'shared',
  ObservationDefinition: 'shared',
  OperationDefinition: 'shared',
  Organization: 'shared',
  OrganizationAffiliation: 'shared',
  PaymentNotice: 'custodian',
  PaymentReconciliation: 'custodian',
  PlanDefinition: 'shared',
  Practitioner: 'shared',
  PractitionerRole: 'shared',
  Questionnaire: 'shared',
  ResearchDefinition: 'shared',
  ResearchElementDefinition: 'shared',
  ResearchStudy: 'shared',
  RiskEvidenceSynthesis: 'shared',
  SearchParameter: 'shared',
  Slot: 'shared',
  SpecimenDefinition: 'shared',
  StructureDefinition: 'shared',
  StructureMap: 'shared',
  Subscription: 'custodian',
  Substance: 'shared',
  SubstanceNucleicAcid: 'shared',
  SubstancePolymer: 'shared',
  SubstanceProtein: 'shared',
  SubstanceReferenceInformation: 'shared',
  SubstanceSourceMaterial: 'shared',
  SubstanceSpecification: 'shared',
  TerminologyCapabilities: 'shared',
  TestReport: 'custodian',
  TestScript: 'shared',
  ValueSet: 'shared',
  VerificationResult: 'custodian',
};

describe('access rules of types outside the Patient compartment', () => {
  it('lists every storable type with no Patient-compartment parameter and the rule it falls under', () => {
    const outside = typesOutsidePatientCompartment();
    expect(outside).toHaveLength(77);
    expect(Object.fromEntries(outside.map((t) => [t, typeAccessOf(t)]))).toEqual(EXPECTED);
  });

  it('has an explicit entry for each of them, and none for a type of the compartment', () => {
    const outside = typesOutsidePatientCompartment();
    expect(outside.filter((t) => !TYPE_ACCESS.has(t))).toEqual([]);
    expect([...TYPE_ACCESS.keys()].filter((t) => !outside.includes(t))).toEqual([]);
    expect(FhirDefinitions.get().patientCompartmentTypes().filter((t) => TYPE_ACCESS.has(t))).toEqual([]);
  });

  it('restricts the custodian-only types (what the consent SQL renders) and nothing shared', () => {
    expect(restrictedTypes()).toEqual(Object.keys(EXPECTED).filter((t) => EXPECTED[t] === 'custodian'));
    expect(restrictedTypes()).toEqual(expect.arrayContaining(['Binary', 'Bundle', 'Subscription', 'MessageHeader', 'Linkage', 'Contract', 'VerificationResult']));
    expect(restrictedTypes()).not.toContain('Organization');
  });

  it('judges a type it does not know as custodian only (default deny)', () => {
    expect(typeAccessOf('SomeFutureType')).toBe('custodian');
  });

  it('accepts module type rules for custodian-only types only (a rule on a shared or compartment type would never apply)', () => {
    const rules = new Map([
      ['Subscription', [{ name: 'subscriptions-owner' }]],
      ['Organization', [{ name: 'directory-extra' }]],
      ['Task', [{ name: 'referrals-task' }]],
    ]);
    expect(misplacedTypeRules(rules)).toEqual(['directory-extra: Organization is shared', 'referrals-task: Task is not a custodian-only type']);
    expect(misplacedTypeRules(new Map([['Bundle', [{ name: 'case-reports' }]]]))).toEqual([]);
  });
});
