import type { Coding, Condition, Observation, Resource } from '@medplum/fhirtypes';

/** What makes a write a case-report trigger: whose, which reportable code, and when it happened. */
export interface CaseReportTrigger {
  patientId: string;
  code: Coding & { system: string; code: string };
  /** The clinical instant the episode rule measures gaps with (ISO 8601). */
  clinicalDate: string;
  encounterId?: string;
}

const LAB_CATEGORY = 'http://terminology.hl7.org/CodeSystem/observation-category|laboratory';
/** A Condition judged not to exist, or recorded in error, reports nothing. */
const NOT_A_CONDITION = new Set(['refuted', 'entered-in-error']);
/** A lab result withdrawn or never performed reports nothing. */
const NOT_A_RESULT = new Set(['cancelled', 'entered-in-error']);

/**
 * The trigger a Condition or a laboratory Observation is, or undefined (docs/public-health.md,
 * Case reports): a `Patient` subject and a coding whose `system|code` is reportable (the first such
 * coding in the resource's order names the report's condition code). The clinical date is the
 * onset (Condition; else `recordedDate`) or the effective time (Observation; else `issued`), and
 * the version's `lastUpdated` when the resource has none.
 */
export function caseReportTriggerOf(resource: Resource | undefined, reportable: ReadonlySet<string>): CaseReportTrigger | undefined {
  if (resource?.resourceType === 'Condition') {
    const c = resource as Condition;
    if (c.verificationStatus?.coding?.some((v) => NOT_A_CONDITION.has(v.code ?? ''))) return undefined;
    return triggerOf(c.subject?.reference, c.code?.coding, c.encounter?.reference, [c.onsetDateTime, c.onsetPeriod?.start, c.recordedDate, c.meta?.lastUpdated], reportable);
  }
  if (resource?.resourceType === 'Observation') {
    const o = resource as Observation;
    if (NOT_A_RESULT.has(o.status)) return undefined;
    const lab = o.category?.some((cat) => cat.coding?.some((x) => `${x.system}|${x.code}` === LAB_CATEGORY));
    if (!lab) return undefined;
    return triggerOf(o.subject?.reference, o.code?.coding, o.encounter?.reference, [o.effectiveDateTime, o.effectivePeriod?.start, o.effectiveInstant, o.issued, o.meta?.lastUpdated], reportable);
  }
  return undefined;
}

function triggerOf(
  subject: string | undefined,
  codings: Coding[] | undefined,
  encounter: string | undefined,
  dates: (string | undefined)[],
  reportable: ReadonlySet<string>,
): CaseReportTrigger | undefined {
  const patientId = idOf('Patient', subject);
  if (!patientId) return undefined;
  const code = codings?.find((c) => c.system && c.code && reportable.has(`${c.system}|${c.code}`));
  if (!code?.system || !code.code) return undefined;
  const clinicalDate = dates.map((d) => (d ? Date.parse(d) : NaN)).find((t) => !Number.isNaN(t));
  return {
    patientId,
    code: { system: code.system, code: code.code, ...(code.display ? { display: code.display } : {}) },
    clinicalDate: new Date(clinicalDate ?? Date.now()).toISOString(),
    ...(idOf('Encounter', encounter) ? { encounterId: idOf('Encounter', encounter) } : {}),
  };
}

/** The id of a relative reference `Type/id` (absolute or contained references are not followed). */
function idOf(type: string, reference: string | undefined): string | undefined {
  const m = new RegExp(`^${type}/([A-Za-z0-9\\-.]{1,64})$`).exec(reference ?? '');
  return m?.[1];
}
