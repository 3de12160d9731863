import type { SqlBinder } from '../fhir/pipeline/access-predicate';
import { tokenIndexHolds } from '../fhir/search/token-index-probe';
import type { ConsentPolicy } from './consent-policy';

/** SQL expressions for the attributes of the row being judged (columns at an alias, or bound values). */
export interface JudgedRow {
  authorOrg: string;
  compartments: string;
  securityLabels: string;
  resourceType: string;
  id: string;
  /**
   * The period a version is judged on for `dataPeriod` (a tstzrange): its clinical period, or the
   * instant it was recorded where its type or the version has none (docs/consent.md).
   */
  clinicalPeriod: string;
}

export function columnsOf(alias: string): JudgedRow {
  return {
    authorOrg: `${alias}.author_org`,
    compartments: `${alias}.compartments`,
    securityLabels: `${alias}.security_labels`,
    resourceType: `${alias}.resource_type`,
    id: `${alias}.id`,
    clinicalPeriod: `COALESCE(${alias}.clinical_period, tstzrange(${alias}.last_updated, ${alias}.last_updated, '[]'))`,
  };
}

export interface Requester {
  organization?: string;
  purpose?: string;
  breakGlass: boolean;
  /** Individuals and teams the token acts for (`on_behalf_of`: Practitioner, PractitionerRole, CareTeam references). */
  actors?: readonly string[];
}

/**
 * Provisions of the patient's active Consents that match this requester and row (docs/consent.md):
 * actor organization, purpose, period (now), class, specific resource, data period, and a label
 * condition. Aliases start with `cns_` so they never shadow the compiler's.
 *
 * Denials of the patient's linked records (table patient_link: the same person's records at other
 * organizations) count too, so a denial follows the person; their permits do not (docs/consent.md,
 * Linked records: a link another organization asserts must never open this record's data).
 */
export function matchingProvisions(patient: string, row: JudgedRow, who: { organization: string; purpose: string; actors: string }, labelCondition: string): string {
  return `consent_provision cns_p
    WHERE cns_p.patient_id = ANY(${patient} || ARRAY(SELECT cns_k.linked_id FROM patient_link cns_k WHERE cns_k.patient_id = ${patient}))
      AND (cns_p.patient_id = ${patient} OR NOT cns_p.permit)
      AND (cns_p.actor_org IS NULL OR cns_p.actor_org = ${who.organization})
      AND (cns_p.purpose IS NULL OR cns_p.purpose = ${who.purpose})
      AND cns_p.period @> now()
      AND (cns_p.resource_class IS NULL OR cns_p.resource_class = ${row.resourceType})
      AND (cns_p.data_ref IS NULL OR cns_p.data_ref = ${row.resourceType} || '/' || ${row.id})
      AND ${dataPeriodCondition(row)}
      AND ${labelCondition}
      AND ${individualActorAndCodeConditions(row, who.actors)}`;
}

/**
 * provision.actor naming a Practitioner, PractitionerRole or CareTeam, and provision.code
 * (docs/consent.md). An individual actor matches a token acting for it; a *deny* naming individuals
 * also matches a token that declares no one (the exchange cannot tell it is not that person, so a
 * denial is not evaded by leaving the declaration out). A code matches a row whose `code` search
 * index (token rows, param `code`) holds that Coding: one probe of search_token_code_id_idx.
 */
export function individualActorAndCodeConditions(row: JudgedRow, actors: string): string {
  return `(cns_p.actor_ref IS NULL OR cns_p.actor_ref = ANY(${actors}) OR (NOT cns_p.permit AND cardinality(${actors}) = 0))
      AND (cns_p.code IS NULL OR ${tokenIndexHolds(row, `'code'`, 'cns_p.code_system', 'cns_p.code')})`;
}

/**
 * provision.dataPeriod over the version's clinical period: a denial applies when they overlap (any
 * part of the care falls in the period the patient hides), a permit only when the care lies wholly
 * inside the period the patient opens.
 */
export function dataPeriodCondition(row: JudgedRow): string {
  return `CASE WHEN cns_p.permit THEN cns_p.data_period @> ${row.clinicalPeriod} ELSE cns_p.data_period && ${row.clinicalPeriod} END`;
}

/** The deciding provision first: the most nested (an exception overrides its parent); on a tie deny, then a permit naming a label. */
export const DECIDING_ORDER = 'cns_p.depth DESC, cns_p.permit ASC, (cns_p.security_label IS NULL) ASC';

/**
 * The consent predicate over one row (docs/consent.md has the rules and the plan):
 *
 *   own organization's row
 *   OR ( every patient of the row: the deciding provision permits, else the base policy
 *        AND (no sensitive label OR (a patient's row AND for every patient and sensitive label:
 *             the deciding provision among those naming that label or none is a permit naming it)) )
 *
 * Break-the-glass drops the first patient condition (patient denials and opt-in), not the second
 * unless the policy says so.
 */
export function renderConsentPredicate(row: JudgedRow, bind: SqlBinder, policy: ConsentPolicy, who: Requester): string {
  const org = bind.bind(who.organization ?? null);
  const purpose = bind.bind(who.purpose ?? null);
  const requester = { organization: org, purpose, actors: `${bind.bind([...(who.actors ?? [])])}::text[]` };
  const sensitive = `${bind.bind(policy.sensitiveLabels)}::text[]`;
  const base = policy.basePolicy === 'opt-out' && !!who.purpose && policy.sharedPurposes.includes(who.purpose) ? 'TRUE' : 'FALSE';
  const own = who.organization ? `${row.authorOrg} = ${org}` : 'FALSE';
  // A patient with no provisions and no linked records (not a consent_subject) is decided by the
  // base policy alone: one primary-key probe instead of the link and provision probes. CASE, not
  // AND: the planner would turn the EXISTS into a join evaluated after the provision probe.
  const subject = `EXISTS (SELECT 1 FROM consent_subject cns_s WHERE cns_s.patient_id = cns_c.patient)`;
  const decided = `COALESCE((SELECT cns_p.permit FROM ${matchingProvisions('cns_c.patient', row, requester, `(cns_p.security_label IS NULL OR cns_p.security_label = ANY(${row.securityLabels}))`)}
                             ORDER BY ${DECIDING_ORDER} LIMIT 1), ${base})`;
  const patients = who.breakGlass
    ? 'TRUE'
    : `NOT EXISTS (SELECT 1 FROM unnest(${row.compartments}) AS cns_c(patient)
         WHERE CASE WHEN ${subject} THEN NOT ${decided} ELSE NOT ${base} END)`;
  const labels =
    who.breakGlass && policy.breakGlassOverridesSensitive
      ? 'TRUE'
      : `(NOT (${row.securityLabels} && ${sensitive})
          OR (${row.compartments} <> '{}' AND NOT EXISTS (
            SELECT 1 FROM unnest(${row.compartments}) AS cns_c(patient), unnest(${row.securityLabels}) AS cns_l(label)
             WHERE cns_l.label = ANY(${sensitive})
               AND NOT COALESCE((SELECT cns_p.permit AND cns_p.security_label IS NOT NULL
                                   FROM ${matchingProvisions('cns_c.patient', row, requester, '(cns_p.security_label IS NULL OR cns_p.security_label = cns_l.label)')}
                                  ORDER BY ${DECIDING_ORDER} LIMIT 1), FALSE))))`;
  return `${own} OR (${patients} AND ${labels})`;
}
