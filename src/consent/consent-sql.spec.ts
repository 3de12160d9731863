import { SqlParams } from '../fhir/storage/sql-params';
import type { PatientAccessContributor, ReadRestriction, TypeAccessRule } from '../fhir/pipeline/read-access';
import type { ConsentPolicy } from './consent-policy';
import { baseSharesWith, columnsOf, DECIDING_ORDER, dataPeriodCondition, matchingProvisions, renderConsentPredicate, renderPatientFallback, renderTypeAccess } from './consent-sql';
import { restrictedTypes } from './type-access-rules';

const policy = (basePolicy: 'opt-in' | 'opt-out'): ConsentPolicy =>
  ({ basePolicy, sharedPurposes: ['TREAT'], sensitiveLabels: ['http://terminology.hl7.org/CodeSystem/v3-ActCode|HIV'], breakGlassOverridesSensitive: false }) as ConsentPolicy;
const referral: PatientAccessContributor = {
  name: 'referrals-active',
  basis: 'referral',
  render: (patient, row, requester, bind) => `EXISTS (SELECT 1 FROM referral_test rf WHERE rf.patient = ${patient} AND rf.org = ${requester.organization} AND rf.kind = ${bind.bind(row.resourceType === 'x' ? 'x' : 'any')})`,
};
const subscriptionsOwner: TypeAccessRule = {
  name: 'subscriptions-owner',
  resourceTypes: ['Subscription'],
  render: (row, requester) => `${row.id} = ${requester.organization}`,
};

describe('consent SQL: types outside the Patient compartment and read-access contributors', () => {
  it('judges a row of a custodian-only type by the bound list of those types, at the alias given', () => {
    const p = new SqlParams();
    expect(renderTypeAccess(columnsOf('b2'), p, { organization: '$9', purpose: '$10' }, new Map())).toBe('b2.resource_type <> ALL($1::text[])');
    expect(p.values).toEqual([restrictedTypes()]);
  });

  it('ORs a module rule for its type only, binding the type name', () => {
    const p = new SqlParams();
    const sql = renderTypeAccess(columnsOf('h'), p, { organization: '$9::text', purpose: '$10::text' }, new Map([['Subscription', [subscriptionsOwner]]]));
    expect(sql).toBe('h.resource_type <> ALL($1::text[]) OR (h.resource_type = $2 AND ((h.id = $9::text)))');
    expect(p.values).toEqual([restrictedTypes(), 'Subscription']);
  });

  it('ORs several rules of one type, and several contributors', () => {
    const p = new SqlParams();
    const ownerTeam: TypeAccessRule = { name: 'subscriptions-team', resourceTypes: ['Subscription'], render: (row) => `${row.id} = 'team'` };
    const rules = new Map([['Subscription', [subscriptionsOwner, ownerTeam]]]);
    expect(renderTypeAccess(columnsOf('h'), p, { organization: '$9::text', purpose: '$10::text' }, rules)).toBe(
      "h.resource_type <> ALL($1::text[]) OR (h.resource_type = $2 AND ((h.id = $9::text) OR (h.id = 'team')))",
    );
    const audit: PatientAccessContributor = { name: 'audit-test', basis: 'policy', render: (patient) => `${patient} IS NOT NULL` };
    expect(renderPatientFallback('cns_c.patient', columnsOf('r'), new SqlParams(), { organization: '$8::text', purpose: '$9::text' }, false, [audit, audit])).toBe(
      '((cns_c.patient IS NOT NULL) OR (cns_c.patient IS NOT NULL))',
    );
  });

  it('renders contributors only where the base policy would not share', () => {
    const p = new SqlParams();
    const requester = { organization: '$8::text', purpose: '$9::text' };
    expect(renderPatientFallback('cns_c.patient', columnsOf('r'), p, requester, true, [referral])).toBe('TRUE');
    expect(renderPatientFallback('cns_c.patient', columnsOf('r'), p, requester, false, [])).toBe('FALSE');
    expect(renderPatientFallback('cns_c.patient', columnsOf('r'), p, requester, false, [referral])).toBe(
      '((EXISTS (SELECT 1 FROM referral_test rf WHERE rf.patient = cns_c.patient AND rf.org = $8::text AND rf.kind = $1)))',
    );
  });

  it('puts a contributor in the fallback of the deciding provision and of non-subjects, never in the label condition', () => {
    const p = new SqlParams();
    // A row that cannot be a Binary (no securityContext): the predicate without the Binary branch.
    const row = columnsOf('r');
    delete row.securityContext;
    const sql = renderConsentPredicate(row, p, policy('opt-in'), { organization: 'org-b', purpose: 'TREAT', breakGlass: false }, { contributors: [referral], typeRules: new Map() });
    // Once for COALESCE(<deciding provision>, <fallback>) and once for a patient with no provisions.
    expect(sql.split('FROM referral_test rf').length - 1).toBe(2);
    // Each rendered for the patient of the compartment being judged.
    expect(sql.split('rf.patient = cns_c.patient AND').length - 1).toBe(2);
    expect(sql).toContain('ORDER BY cns_p.depth DESC, cns_p.permit ASC, (cns_p.security_label IS NULL) ASC LIMIT 1), ((EXISTS (SELECT 1 FROM referral_test');
    expect(sql).toContain('ELSE NOT ((EXISTS (SELECT 1 FROM referral_test');
    expect(sql.indexOf('referral_test', sql.indexOf('r.security_labels &&'))).toBe(-1);
    expect(sql.startsWith('r.custodian_org = $1::text OR ((r.resource_type <> ALL(')).toBe(true);
    expect(p.values[0]).toBe('org-b');
  });

  it('renders no contributor under break-the-glass or a shared purpose', () => {
    const extensions = { contributors: [referral], typeRules: new Map() };
    const glass = renderConsentPredicate(columnsOf('r'), new SqlParams(), policy('opt-in'), { organization: 'org-b', purpose: 'ETREAT', breakGlass: true }, extensions);
    const shared = renderConsentPredicate(columnsOf('r'), new SqlParams(), policy('opt-out'), { organization: 'org-b', purpose: 'TREAT', breakGlass: false }, extensions);
    expect(glass).not.toContain('referral_test');
    expect(shared).not.toContain('referral_test');
    // The type rule still applies under break-the-glass.
    expect(glass).toContain('r.resource_type <> ALL(');
  });

  it('binds no value a break-the-glass statement does not use (a contributor binds values; a value bound but unused fails the statement)', () => {
    const p = new SqlParams();
    const row = columnsOf('r');
    delete row.securityContext;
    const sql = renderConsentPredicate(row, p, policy('opt-in'), { organization: 'org-b', purpose: 'ETREAT', breakGlass: true }, { contributors: [referral], typeRules: new Map() });
    const used = new Set([...sql.matchAll(/\$(\d+)/g)].map((m) => Number(m[1])));
    expect(p.values.map((_v, i) => used.has(i + 1))).toEqual(p.values.map(() => true));
  });

  it('ANDs a read restriction beside the type rule, for every requester but the custodian, break-the-glass too', () => {
    const parties: ReadRestriction = { name: 'test-parties', resourceTypes: ['Task'], render: (row, requester) => `(${row.resourceType} <> 'Task' OR ${row.id} = ${requester.organization})` };
    const row = columnsOf('r');
    delete row.securityContext;
    for (const who of [
      { organization: 'org-c', purpose: 'TREAT', breakGlass: false },
      { organization: 'org-c', purpose: 'ETREAT', breakGlass: true },
    ]) {
      const p = new SqlParams();
      const sql = renderConsentPredicate(row, p, policy('opt-out'), who, { contributors: [], typeRules: new Map(), restrictions: [parties] });
      expect(sql.startsWith(`r.custodian_org = $1::text OR ((r.resource_type <> ALL($5::text[])) AND ((r.resource_type <> 'Task' OR r.id = $1::text)) AND `)).toBe(true);
    }
  });
});

/** SQL with its line breaks and indentation collapsed, to compare with one-line expectations. */
const oneLine = (sql: string) => sql.replace(/\s+/g, ' ');
const HIV = 'http://terminology.hl7.org/CodeSystem/v3-ActCode|HIV';
const CLINICAL_PERIOD = "COALESCE(r.clinical_period, tstzrange(r.last_updated, r.last_updated, '[]'))";
/** A row that cannot be a Binary (no securityContext): the predicate without the Binary branch. */
const plainRow = () => {
  const row = columnsOf('r');
  delete row.securityContext;
  return row;
};

describe('consent SQL: the pieces of the predicate', () => {
  it('names the judged columns at the alias, a version without a clinical period by its lastUpdated instant', () => {
    expect(columnsOf('r')).toEqual({
      custodianOrg: 'r.custodian_org',
      compartments: 'r.compartments',
      securityLabels: 'r.security_labels',
      resourceType: 'r.resource_type',
      id: 'r.id',
      clinicalPeriod: CLINICAL_PERIOD,
      securityContext: "(r.content #>> '{securityContext,reference}')",
    });
  });

  it.each([
    ['shares under opt-out for a shared purpose', 'opt-out', 'TREAT', true],
    ['shares nothing under opt-out for a purpose not shared', 'opt-out', 'HRESCH', false],
    ['shares nothing under opt-out without a purpose', 'opt-out', undefined, false],
    ['shares nothing under opt-in, even for a shared purpose', 'opt-in', 'TREAT', false],
  ] as const)('the base policy %s', (_name, base, purpose, shares) => {
    expect(baseSharesWith(policy(base), { organization: 'org-b', purpose, breakGlass: false })).toBe(shares);
  });

  it('decides by the most nested provision, then deny before permit, then a permit naming a label', () => {
    expect(DECIDING_ORDER).toBe('cns_p.depth DESC, cns_p.permit ASC, (cns_p.security_label IS NULL) ASC');
  });

  it('a denial applies when its data period overlaps the care, a permit only when it contains it', () => {
    expect(dataPeriodCondition(columnsOf('r'))).toBe(`CASE WHEN cns_p.permit THEN cns_p.data_period @> ${CLINICAL_PERIOD} ELSE cns_p.data_period && ${CLINICAL_PERIOD} END`);
  });

  it('matches provisions of the patient, the denials of linked records and the permits of Person-linked ones, on every criterion of a provision row', () => {
    expect(oneLine(matchingProvisions('$P', columnsOf('r'), { organization: '$O', purpose: '$U', actors: '$A' }, 'LABEL_CONDITION'))).toBe(
      'consent_provision cns_p WHERE cns_p.patient_id = ANY($P || ARRAY(SELECT cns_k.linked_id FROM patient_link cns_k WHERE cns_k.patient_id = $P))' +
        // The two probes are plpgsql functions (planned once per connection), not sub-selects planned in every statement.
        ' AND (cns_p.patient_id = $P OR NOT cns_p.permit OR consent_linked_via_person($P, cns_p.patient_id))' +
        ' AND (cns_p.actor_org IS NULL OR cns_p.actor_org = $O)' +
        ' AND (cns_p.purpose IS NULL OR cns_p.purpose = $U)' +
        ' AND cns_p.period @> now()' +
        ' AND (cns_p.resource_class IS NULL OR cns_p.resource_class = r.resource_type)' +
        " AND (cns_p.data_ref IS NULL OR cns_p.data_ref = r.resource_type || '/' || r.id)" +
        ` AND CASE WHEN cns_p.permit THEN cns_p.data_period @> ${CLINICAL_PERIOD} ELSE cns_p.data_period && ${CLINICAL_PERIOD} END` +
        ' AND LABEL_CONDITION' +
        // An individual actor matches a token acting for it; a denial naming individuals also matches a token that declares no one.
        ' AND (cns_p.actor_ref IS NULL OR cns_p.actor_ref = ANY($A) OR (NOT cns_p.permit AND cardinality($A) = 0))' +
        ' AND (cns_p.code IS NULL OR consent_code_indexed(r.resource_type, r.id, cns_p.code_system, cns_p.code))',
    );
  });
});

describe('consent SQL: the predicate over one row', () => {
  const provisions = (labelCondition: string) =>
    oneLine(matchingProvisions('cns_c.patient', plainRow(), { organization: '$1::text', purpose: '$2::text', actors: '$3::text[]' }, labelCondition));
  /** The sensitive-label condition, bound at $4: a sensitive row needs a permit naming each of its sensitive labels. (Built inside the tests, so a mutant that breaks it fails a test, not the file.) */
  const labels = () =>
    "(NOT (r.security_labels && $4::text[]) OR (r.compartments <> '{}' AND NOT EXISTS ( SELECT 1 FROM unnest(r.compartments) AS cns_c(patient), unnest(r.security_labels) AS cns_l(label)" +
    ' WHERE cns_l.label = ANY($4::text[]) AND NOT COALESCE((SELECT cns_p.permit AND cns_p.security_label IS NOT NULL FROM ' +
    provisions('(cns_p.security_label IS NULL OR cns_p.security_label = cns_l.label)') +
    ` ORDER BY ${DECIDING_ORDER} LIMIT 1), FALSE))))`;
  const patients = (fallback: string) =>
    'NOT EXISTS (SELECT 1 FROM unnest(r.compartments) AS cns_c(patient) WHERE CASE WHEN EXISTS (SELECT 1 FROM consent_subject cns_s WHERE cns_s.patient_id = cns_c.patient)' +
    ` THEN NOT COALESCE((SELECT cns_p.permit FROM ${provisions('(cns_p.security_label IS NULL OR cns_p.security_label = ANY(r.security_labels))')} ORDER BY ${DECIDING_ORDER} LIMIT 1), ${fallback})` +
    ` ELSE NOT ${fallback} END)`;

  it('own data, else a type the requester may see AND every patient permits AND the sensitive labels are permitted', () => {
    const p = new SqlParams();
    const sql = renderConsentPredicate(plainRow(), p, policy('opt-out'), { organization: 'org-b', purpose: 'TREAT', breakGlass: false, actors: ['Practitioner/dr-x'] });
    // opt-out and a shared purpose: a patient without a deciding provision shares (TRUE).
    expect(oneLine(sql)).toBe(`r.custodian_org = $1::text OR ((r.resource_type <> ALL($5::text[])) AND ${patients('TRUE')} AND ${labels()})`);
    expect(p.values).toEqual(['org-b', 'TREAT', ['Practitioner/dr-x'], [HIV], restrictedTypes()]);
  });

  it('opt-in: a patient without a deciding permit shares nothing (FALSE); no actors bind an empty list', () => {
    const p = new SqlParams();
    const sql = renderConsentPredicate(plainRow(), p, policy('opt-in'), { organization: 'org-b', purpose: 'TREAT', breakGlass: false });
    expect(oneLine(sql)).toBe(`r.custodian_org = $1::text OR ((r.resource_type <> ALL($5::text[])) AND ${patients('FALSE')} AND ${labels()})`);
    expect(p.values).toEqual(['org-b', 'TREAT', [], [HIV], restrictedTypes()]);
  });

  it('break-the-glass drops the patient condition, not the sensitive labels unless the policy says so', () => {
    const glass = { organization: 'org-b', purpose: 'ETREAT', breakGlass: true };
    expect(oneLine(renderConsentPredicate(plainRow(), new SqlParams(), policy('opt-in'), glass))).toBe(`r.custodian_org = $1::text OR ((r.resource_type <> ALL($5::text[])) AND TRUE AND ${labels()})`);
    const overriding = { ...policy('opt-in'), breakGlassOverridesSensitive: true };
    expect(oneLine(renderConsentPredicate(plainRow(), new SqlParams(), overriding, glass))).toBe('r.custodian_org = $1::text OR ((r.resource_type <> ALL($5::text[])) AND TRUE AND TRUE)');
    // The override is for break-the-glass only.
    expect(oneLine(renderConsentPredicate(plainRow(), new SqlParams(), overriding, { ...glass, purpose: 'TREAT', breakGlass: false }))).toContain(labels());
  });

  it('a requester without an organization owns nothing; its organization and purpose bind as NULL', () => {
    const p = new SqlParams();
    const sql = renderConsentPredicate(plainRow(), p, { ...policy('opt-in'), breakGlassOverridesSensitive: true }, { breakGlass: true });
    expect(oneLine(sql)).toBe('FALSE OR ((r.resource_type <> ALL($5::text[])) AND TRUE AND TRUE)');
    expect(p.values).toEqual([null, null, [], [HIV], restrictedTypes()]);
  });

  it('a Binary: its custodian, or whoever may read the current non-Binary resource its securityContext names', () => {
    const p = new SqlParams();
    const glass = { organization: 'org-b', purpose: 'ETREAT', breakGlass: true };
    const overriding = { ...policy('opt-in'), breakGlassOverridesSensitive: true };
    const sql = oneLine(renderConsentPredicate(columnsOf('r'), p, overriding, glass));
    const context = "(r.content #>> '{securityContext,reference}')";
    expect(sql).toBe(
      "(r.resource_type <> 'Binary' AND (r.custodian_org = $1::text OR ((r.resource_type <> ALL($5::text[])) AND TRUE AND TRUE)))" +
        " OR (r.resource_type = 'Binary' AND (COALESCE(r.custodian_org = $6::text, FALSE)" +
        ` OR EXISTS (SELECT 1 FROM resource cns_sc WHERE ${context} ~ '^[A-Z][A-Za-z]{1,63}/[A-Za-z0-9.-]{1,64}$'` +
        ` AND cns_sc.resource_type = split_part(${context}, '/', 1) AND cns_sc.id = split_part(${context}, '/', 2)` +
        " AND cns_sc.resource_type <> 'Binary' AND NOT cns_sc.deleted" +
        ' AND (cns_sc.custodian_org = $7::text OR ((cns_sc.resource_type <> ALL($11::text[])) AND TRUE AND TRUE)))))',
    );
    expect(p.values).toEqual(['org-b', 'ETREAT', [], [HIV], restrictedTypes(), 'org-b', 'org-b', 'ETREAT', [], [HIV], restrictedTypes()]);
    // Without an organization only the securityContext can open a Binary.
    expect(oneLine(renderConsentPredicate(columnsOf('r'), new SqlParams(), overriding, { breakGlass: true }))).toContain("OR (r.resource_type = 'Binary' AND (FALSE OR EXISTS (SELECT 1 FROM resource cns_sc");
  });
});
