import type { SqlBinder } from '../fhir/pipeline/access-predicate';
import { referencedResourceWhere } from '../fhir/storage/access-attributes';
import type { ConsentPolicy } from './consent-policy';

/** SQL expressions for the attributes of the row being judged (columns at an alias, or bound values). */
export interface JudgedRow {
  authorOrg: string;
  compartments: string;
  securityLabels: string;
  resourceType: string;
  id: string;
  /** The date a resource has for `dataPeriod`: when this version was recorded (docs/consent.md). */
  date: string;
  /** A Binary's `securityContext.reference` (text); absent where the row cannot be a Binary's. */
  securityContext?: string;
}

export function columnsOf(alias: string): JudgedRow {
  return {
    authorOrg: `${alias}.author_org`,
    compartments: `${alias}.compartments`,
    securityLabels: `${alias}.security_labels`,
    resourceType: `${alias}.resource_type`,
    id: `${alias}.id`,
    date: `${alias}.last_updated`,
    securityContext: `(${alias}.content #>> '{securityContext,reference}')`,
  };
}

export interface Requester {
  organization?: string;
  purpose?: string;
  breakGlass: boolean;
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
export function matchingProvisions(patient: string, row: JudgedRow, who: { organization: string; purpose: string }, labelCondition: string): string {
  return `consent_provision cns_p
    WHERE cns_p.patient_id = ANY(${patient} || ARRAY(SELECT cns_k.linked_id FROM patient_link cns_k WHERE cns_k.patient_id = ${patient}))
      AND (cns_p.patient_id = ${patient} OR NOT cns_p.permit)
      AND (cns_p.actor_org IS NULL OR cns_p.actor_org = ${who.organization})
      AND (cns_p.purpose IS NULL OR cns_p.purpose = ${who.purpose})
      AND cns_p.period @> now()
      AND (cns_p.resource_class IS NULL OR cns_p.resource_class = ${row.resourceType})
      AND (cns_p.data_ref IS NULL OR cns_p.data_ref = ${row.resourceType} || '/' || ${row.id})
      AND cns_p.data_period @> ${row.date}
      AND ${labelCondition}`;
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
  const rule = renderResourcePredicate(row, bind, policy, who);
  if (row.securityContext === undefined) return rule;
  // OR of two guarded branches, not CASE: the planner estimates each branch (a CASE gets a default
  // selectivity, which skewed `_total=estimate` and plans of every other type).
  const binary = renderBinaryPredicate(row, row.securityContext, bind, policy, who);
  return `(${row.resourceType} <> 'Binary' AND (${rule})) OR (${row.resourceType} = 'Binary' AND ${binary})`;
}

/**
 * Binary (docs/consent.md, Binary): a Binary has no patient of its own, so the rule above would
 * share every one. Instead its custodian (the organization that created it) reads it, and so does
 * whoever may read the resource its `securityContext` names (R4 Binary.securityContext: that
 * resource's consent and custodian decide). No securityContext, or one that names no current
 * resource in `Type/id` form: the custodian only.
 */
function renderBinaryPredicate(row: JudgedRow, securityContext: string, bind: SqlBinder, policy: ConsentPolicy, who: Requester): string {
  const own = who.organization ? `COALESCE(${row.authorOrg} = ${bind.bind(who.organization)}, FALSE)` : 'FALSE';
  const target = columnsOf('cns_sc');
  delete target.securityContext;
  return `(${own} OR ${referencedResourceWhere(securityContext, 'cns_sc', renderResourcePredicate(target, bind, policy, who))})`;
}

function renderResourcePredicate(row: JudgedRow, bind: SqlBinder, policy: ConsentPolicy, who: Requester): string {
  const org = bind.bind(who.organization ?? null);
  const purpose = bind.bind(who.purpose ?? null);
  const requester = { organization: org, purpose };
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
