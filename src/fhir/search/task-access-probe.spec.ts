import { SqlParams } from '../storage/sql-params';
import { referralPartyCondition, TaskGrantShape, taskGrantQueries } from './task-access-probe';

const shape: TaskGrantShape = {
  taskProfile: 'urn:task-profile',
  requestProfile: 'urn:request-profile',
  openStatuses: ['requested', 'accepted'],
  graceStatuses: ['completed'],
  graceDays: 30.7,
};
const row = { custodianOrg: 'r.custodian_org', compartments: 'r.compartments', securityLabels: 'r.security_labels', resourceType: 'r.resource_type', id: 'r.id', clinicalPeriod: 'r.clinical_period' };
const requester = { organization: '$90::text', purpose: '$91::text' };

describe('task access probe (the SQL of referral-scoped access)', () => {
  it('binds the profile, statuses and whole days of each live check, and nothing else; no value is spliced', () => {
    const p = new SqlParams();
    const q = taskGrantQueries('cns_c.patient', row, requester, p, shape);
    expect([q.ownerReads.length, q.requesterReads.length, q.ownerReadsReferral.length]).toEqual([2, 1, 2]);
    // Three live checks (Patient, supportingInfo, output) of four values each, then two profile-only checks.
    const live = ['urn:task-profile', ['requested', 'accepted'], ['completed'], 30];
    expect(p.values).toEqual([...live, ...live, ...live, 'urn:task-profile', 'urn:task-profile']);
    for (const sql of [...q.ownerReads, ...q.requesterReads, ...q.ownerReadsReferral]) expect(sql).not.toMatch(/urn:|requested|completed/);
  });

  it('walks reference index rows from the judged row: supportingInfo held by the Task custodian, outputs held by the owner, the Patient through its Tasks', () => {
    const p = new SqlParams();
    const [patient, supporting] = taskGrantQueries('cns_c.patient', row, requester, p, shape).ownerReads;
    expect(patient).toContain(`r.resource_type = 'Patient' AND r.id = cns_c.patient`);
    expect(patient).toContain(`tap_p.target_type = 'Patient' AND tap_p.target_id = cns_c.patient AND tap_p.resource_type = 'Task' AND tap_p.param = 'patient'`);
    expect(supporting).toContain(`tap_s.target_type = r.resource_type AND tap_s.target_id = r.id AND tap_s.resource_type = 'ServiceRequest' AND tap_s.param = 'supporting-info'`);
    expect(supporting).toContain('tap_t.custodian_org = r.custodian_org');
    expect(supporting).toContain(`tap_r.param = 'owner'\n                     AND tap_r.target_type = 'Organization' AND tap_r.target_id = $90::text`);
    const [output] = taskGrantQueries('cns_c.patient', row, requester, new SqlParams(), shape).requesterReads;
    expect(output).toContain(`tap_o.param = 'output-reference'`);
    expect(output).toContain(`tap_r.param = 'requester'\n                     AND tap_r.target_type = 'Organization' AND tap_r.target_id = $90::text`);
    expect(output).toContain(`tap_r.param = 'owner'\n                     AND tap_r.target_type = 'Organization' AND tap_r.target_id = r.custodian_org`);
    expect(output).toContain(`make_interval(days => $12::int)`);
  });

  it('the party rule: other types and rows claiming no referral profile pass; a referral Task by its owner, a ServiceRequest by its performer', () => {
    const p = new SqlParams();
    const sql = referralPartyCondition(row, requester, p, shape);
    expect(p.values).toEqual([['urn:task-profile', 'urn:request-profile']]);
    expect(sql).toContain(`r.resource_type <> ALL('{Task,ServiceRequest}'::text[])`);
    expect(sql).toContain(`tap_u.param = '_profile' AND tap_u.uri = ANY($1::text[])`);
    expect(sql).toContain(`CASE WHEN r.resource_type = 'Task' THEN 'owner' ELSE 'performer' END`);
    expect(sql).toContain(`tap_r.target_id = $90::text`);
  });
});
