import type { SqlBinder } from '../fhir/pipeline/access-predicate';
import type { JudgedRow, PatientAccessContributor, ReadRestriction, TypeAccessRule } from '../fhir/pipeline/read-access';
import { referencedResourceWhere } from '../fhir/storage/access-attributes';
import type { ConsentPolicy } from './consent-policy';
import { restrictedTypes } from './type-access-rules';

export type { JudgedRow } from '../fhir/pipeline/read-access';

export function columnsOf(alias: string): JudgedRow {
  return {
    custodianOrg: `${alias}.custodian_org`,
    compartments: `${alias}.compartments`,
    securityLabels: `${alias}.security_labels`,
    resourceType: `${alias}.resource_type`,
    id: `${alias}.id`,
    clinicalPeriod: `COALESCE(${alias}.clinical_period, tstzrange(${alias}.last_updated, ${alias}.last_updated, '[]'))`,
    securityContext: `(${alias}.content #>> '{securityContext,reference}')`,
  };
}

export interface Requester {
  organization?: string;
  purpose?: string;
  breakGlass: boolean;
  /** Individuals and teams the token acts for (`on_behalf_of`: Practitioner, PractitionerRole, CareTeam references). */
  actors?: readonly string[];
}

/** What modules registered (`ReadAccessRegistry`), as the consent stage renders it. */
export interface ReadAccessExtensions {
  contributors: readonly PatientAccessContributor[];
  typeRules: ReadonlyMap<string, readonly TypeAccessRule[]>;
  /** Narrowing rules, ANDed for every requester but the row's custodian (absent: none). */
  restrictions?: readonly ReadRestriction[];
}

export const NO_EXTENSIONS: ReadAccessExtensions = { contributors: [], typeRules: new Map() };

/** Whether the base policy shares other organizations' patient data with this requester. */
export function baseSharesWith(policy: ConsentPolicy, who: Requester): boolean {
  return policy.basePolicy === 'opt-out' && !!who.purpose && policy.sharedPurposes.includes(who.purpose);
}

/**
 * Rows of types outside the Patient compartment (docs/consent.md): a `shared` type (or a type of the
 * compartment) passes; a restricted one only where a module's rule for its type admits the requester
 * (the custodian passed already). Break-the-glass does not change it: it overrides patient choices.
 * The one place type rules are rendered: a Binary `securityContext` rule joins here as an OR for
 * Binary rows (or as a registered TypeAccessRule).
 */
export function renderTypeAccess(row: JudgedRow, bind: SqlBinder, requester: { organization: string; purpose: string }, rules: ReadAccessExtensions['typeRules']): string {
  const unrestricted = `${row.resourceType} <> ALL(${bind.bind(restrictedTypes())}::text[])`;
  const byRule = [...rules].map(([type, forType]) => `(${row.resourceType} = ${bind.bind(type)} AND (${forType.map((r) => `(${r.render(row, requester, bind)})`).join(' OR ')}))`);
  return [unrestricted, ...byRule].join(' OR ');
}

/** The per-patient fallback when no provision decides: the base policy, else any contributor. */
export function renderPatientFallback(patient: string, row: JudgedRow, bind: SqlBinder, requester: { organization: string; purpose: string }, base: boolean, contributors: readonly PatientAccessContributor[]): string {
  if (base) return 'TRUE';
  if (!contributors.length) return 'FALSE';
  return `(${contributors.map((c) => `(${c.render(patient, row, requester, bind)})`).join(' OR ')})`;
}

/**
 * Provisions of the patient's active Consents that match this requester and row (docs/consent.md):
 * actor organization, purpose, period (now), class, specific resource, data period, and a label
 * condition. Aliases start with `cns_` so they never shadow the compiler's.
 *
 * Denials of the patient's linked records (table patient_link: the same person's records at other
 * organizations) count too, so a denial follows the person. Their permits count only where Person
 * links alone join the records (`via_person`: MPI-certain or admin-confirmed), never through a
 * hospital's own Patient.link (docs/consent.md, Linked records: a link another organization
 * asserts must never open this record's data). The probe runs only for a linked record's permit.
 */
export function matchingProvisions(patient: string, row: JudgedRow, who: { organization: string; purpose: string; actors: string }, labelCondition: string): string {
  return `consent_provision cns_p
    WHERE cns_p.patient_id = ANY(${patient} || ARRAY(SELECT cns_k.linked_id FROM patient_link cns_k WHERE cns_k.patient_id = ${patient}))
      AND (cns_p.patient_id = ${patient} OR NOT cns_p.permit
           OR consent_linked_via_person(${patient}, cns_p.patient_id))
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
 * Both probes are plpgsql functions (migration 1732402400370): planned once per connection, not in
 * every statement that carries the predicate (docs/performance.md, "Mix CPU back to the parent").
 */
export function individualActorAndCodeConditions(row: JudgedRow, actors: string): string {
  return `(cns_p.actor_ref IS NULL OR cns_p.actor_ref = ANY(${actors}) OR (NOT cns_p.permit AND cardinality(${actors}) = 0))
      AND (cns_p.code IS NULL OR consent_code_indexed(${row.resourceType}, ${row.id}, cns_p.code_system, cns_p.code))`;
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
 *   the requester is the row's custodian organization (own data)
 *   OR ( the row's type is not restricted, or a module's rule for its type admits the requester
 *        AND every module's read restriction lets the row pass (a referral's parties only)
 *        AND every patient of the row: the deciding provision permits, else the base policy or a
 *            read-access contributor
 *        AND (no sensitive label OR (a patient's row AND for every patient and sensitive label:
 *             the deciding provision among those naming that label or none is a permit naming it)) )
 *
 * Break-the-glass drops the first patient condition (patient denials and opt-in), not the second
 * unless the policy says so.
 */
export function renderConsentPredicate(row: JudgedRow, bind: SqlBinder, policy: ConsentPolicy, who: Requester, extensions: ReadAccessExtensions = NO_EXTENSIONS): string {
  const rule = renderResourcePredicate(row, bind, policy, who, extensions);
  if (row.securityContext === undefined) return rule;
  // OR of two guarded branches, not CASE: the planner estimates each branch (a CASE gets a default
  // selectivity, which skewed `_total=estimate` and plans of every other type).
  const binary = renderBinaryPredicate(row, row.securityContext, bind, policy, who, extensions);
  return `(${row.resourceType} <> 'Binary' AND (${rule})) OR (${row.resourceType} = 'Binary' AND ${binary})`;
}

/**
 * Binary (docs/consent.md, Binary): a Binary has no patient of its own. Its custodian reads it, and
 * so does whoever may read the resource its `securityContext` names (R4 Binary.securityContext: that
 * resource's consent and custodian decide). No securityContext, or one that names no current
 * resource in `Type/id` form: the custodian only (as the type table says for Binary).
 */
function renderBinaryPredicate(row: JudgedRow, securityContext: string, bind: SqlBinder, policy: ConsentPolicy, who: Requester, extensions: ReadAccessExtensions): string {
  const own = who.organization ? `COALESCE(${row.custodianOrg} = ${bind.bind(who.organization)}::text, FALSE)` : 'FALSE';
  const target = columnsOf('cns_sc');
  delete target.securityContext;
  return `(${own} OR ${referencedResourceWhere(securityContext, 'cns_sc', renderResourcePredicate(target, bind, policy, who, extensions))})`;
}

function renderResourcePredicate(row: JudgedRow, bind: SqlBinder, policy: ConsentPolicy, who: Requester, extensions: ReadAccessExtensions): string {
  const org = `${bind.bind(who.organization ?? null)}::text`;
  const purpose = `${bind.bind(who.purpose ?? null)}::text`;
  const requester = { organization: org, purpose, actors: `${bind.bind([...(who.actors ?? [])])}::text[]` };
  const sensitive = `${bind.bind(policy.sensitiveLabels)}::text[]`;
  const own = who.organization ? `${row.custodianOrg} = ${org}` : 'FALSE';
  // A patient with no provisions and no linked records (not a consent_subject) is decided by the
  // base policy alone: one primary-key probe instead of the link and provision probes. CASE, not
  // AND: the planner would turn the EXISTS into a join evaluated after the provision probe.
  const subject = `EXISTS (SELECT 1 FROM consent_subject cns_s WHERE cns_s.patient_id = cns_c.patient)`;
  const patients = who.breakGlass ? 'TRUE' : renderPatientsDecided(row, bind, policy, who, requester, extensions, subject);
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
  const restricted = (extensions.restrictions ?? []).map((r) => ` AND (${r.render(row, requester, bind)})`).join('');
  return `${own} OR ((${renderTypeAccess(row, bind, requester, extensions.typeRules)})${restricted} AND ${patients} AND ${labels})`;
}

/**
 * Every patient of the row: the deciding provision permits, else the base policy or a contributor.
 * Rendered only where it is used (not under break-the-glass): a contributor binds values, and a
 * value bound into a statement that does not use it fails the statement.
 */
function renderPatientsDecided(row: JudgedRow, bind: SqlBinder, policy: ConsentPolicy, who: Requester, requester: { organization: string; purpose: string; actors: string }, extensions: ReadAccessExtensions, subject: string): string {
  const base = renderPatientFallback('cns_c.patient', row, bind, requester, baseSharesWith(policy, who), extensions.contributors);
  const decided = `COALESCE((SELECT cns_p.permit FROM ${matchingProvisions('cns_c.patient', row, requester, `(cns_p.security_label IS NULL OR cns_p.security_label = ANY(${row.securityLabels}))`)}
                             ORDER BY ${DECIDING_ORDER} LIMIT 1), ${base})`;
  return `NOT EXISTS (SELECT 1 FROM unnest(${row.compartments}) AS cns_c(patient)
         WHERE CASE WHEN ${subject} THEN NOT ${decided} ELSE NOT ${base} END)`;
}
