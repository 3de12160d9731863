import { SqlParams } from '../fhir/storage/sql-params';
import type { PatientAccessContributor, ReadRestriction, TypeAccessRule } from '../fhir/pipeline/read-access';
import type { ConsentPolicy } from './consent-policy';
import { columnsOf, renderConsentPredicate, renderPatientFallback, renderTypeAccess } from './consent-sql';
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
