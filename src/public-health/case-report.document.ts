import type { Bundle, BundleEntry, Coding, Composition, Encounter, Organization, Patient, Resource, Task } from '@medplum/fhirtypes';

/** LOINC 55751-2, the eICR document type (HL7 eCR FHIR IG: Composition.type). */
export const CASE_REPORT_TYPE: Coding = { system: 'http://loinc.org', code: '55751-2', display: 'Public health Case report' };
/** The Task code an agency's work queue filters on (`Task?code=…|case-report`). */
export const CASE_REPORT_TASK_CODE: Coding = { system: 'http://hie.example.org/fhir/CodeSystem/public-health-task', code: 'case-report', display: 'Review a case report' };

const SECTION_OF: Record<string, Coding> = {
  Condition: { system: 'http://loinc.org', code: '11450-4', display: 'Problem list - Reported' },
  Observation: { system: 'http://loinc.org', code: '30954-2', display: 'Relevant diagnostic tests/laboratory data Narrative' },
};

export interface CaseReportContents {
  reportId: string;
  compositionId: string;
  /** The Condition or laboratory Observation that triggered the report. */
  trigger: Resource;
  code: Coding;
  patient: Patient;
  encounter?: Encounter;
  /** The trigger's custodian, the reporting organization (its resource when stored). */
  reportingOrganizationId?: string;
  reportingOrganization?: Organization;
  agencyOrganizationId: string;
  valueSetUrl: string;
  fhirBaseUrl: string;
  now: string;
}

/**
 * An eICR-like document Bundle (after the HL7 eCR FHIR IG's eICR Document Bundle, simplified):
 * the Composition first (type LOINC 55751-2, subject the Patient, author the reporting
 * organization, custodian the agency, `event.code` the reportable code), then the Patient, the
 * trigger, its Encounter if any and the reporting Organization if stored. Entries' `fullUrl`s are
 * the resources' URLs on this server, so their relative references resolve inside the Bundle.
 */
export function caseReportBundle(c: CaseReportContents): Bundle {
  const ref = (r: Resource) => ({ reference: `${r.resourceType}/${r.id}` });
  const reporter = c.reportingOrganizationId ? { reference: `Organization/${c.reportingOrganizationId}` } : { reference: `Organization/${c.agencyOrganizationId}` };
  const composition: Composition = {
    resourceType: 'Composition',
    id: c.compositionId,
    status: 'final',
    type: { coding: [CASE_REPORT_TYPE] },
    subject: ref(c.patient),
    ...(c.encounter ? { encounter: ref(c.encounter) } : {}),
    date: c.now,
    author: [reporter],
    title: 'Initial Public Health Case Report',
    custodian: { reference: `Organization/${c.agencyOrganizationId}` },
    event: [{ code: [{ coding: [c.code] }], detail: [ref(c.trigger)] }],
    section: [
      {
        title: c.trigger.resourceType === 'Condition' ? 'Reportable condition' : 'Reportable laboratory result',
        code: { coding: [SECTION_OF[c.trigger.resourceType]] },
        entry: [ref(c.trigger)],
      },
    ],
    extension: [{ url: 'http://hie.example.org/fhir/StructureDefinition/case-report-trigger-value-set', valueCanonical: c.valueSetUrl }],
  };
  const members: Resource[] = [composition, c.patient, c.trigger, ...(c.encounter ? [c.encounter] : []), ...(c.reportingOrganization ? [c.reportingOrganization] : [])];
  const entry: BundleEntry[] = members.map((r) => ({ fullUrl: `${c.fhirBaseUrl}/${r.resourceType}/${r.id}`, resource: r }));
  return {
    resourceType: 'Bundle',
    id: c.reportId,
    identifier: { system: 'urn:ietf:rfc:3986', value: `urn:uuid:${c.reportId}` },
    type: 'document',
    timestamp: c.now,
    entry,
  };
}

/**
 * The agency's work item for one report: `focus` the Bundle, `owner` the agency. Task is in the
 * Patient compartment (`for`), so under an opt-out policy any hospital treating the patient could
 * read it and learn that a report was made: labelled restricted (a sensitive label of the consent
 * policy), it stays the agency's own data only (custodian), like the Bundle.
 */
export function caseReportTask(taskId: string, c: CaseReportContents): Task {
  return {
    resourceType: 'Task',
    id: taskId,
    meta: { security: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality', code: 'R', display: 'restricted' }] },
    status: 'requested',
    intent: 'order',
    priority: 'routine',
    code: { coding: [CASE_REPORT_TASK_CODE] },
    focus: { reference: `Bundle/${c.reportId}` },
    for: { reference: `Patient/${c.patient.id}` },
    authoredOn: c.now,
    ...(c.reportingOrganizationId ? { requester: { reference: `Organization/${c.reportingOrganizationId}` } } : {}),
    owner: { reference: `Organization/${c.agencyOrganizationId}` },
    reasonCode: { coding: [c.code] },
  };
}
