import type { ServiceRequest, Task } from '@medplum/fhirtypes';
import { REFERRAL_TASK_PROFILE } from './referral-profiles';
import { referralAccessGrants, referralAccessRule } from './referral-access';
import { referralTask } from './referral-fixtures';

const NOW = new Date('2026-03-01T12:00:00Z');
const sr: ServiceRequest = {
  resourceType: 'ServiceRequest',
  id: 's1',
  status: 'active',
  intent: 'order',
  subject: { reference: 'Patient/p1' },
  supportingInfo: [{ reference: 'Condition/c1' }, { reference: 'Observation/o1' }, { reference: 'https://elsewhere.example/Observation/x' }, { reference: 'Condition/c1' }],
};
const task = (status: Task['status'], lastUpdated = '2026-02-20T12:00:00Z', extra: Partial<Task> = {}): Task =>
  referralTask({ meta: { profile: [REFERRAL_TASK_PROFILE], lastUpdated }, status, ...extra });
const owner = { basis: 'referral', referral: 'Task/t1', organization: 'b', purpose: 'TREAT', resources: ['Condition/c1', 'Observation/o1', 'Patient/p1'] };

describe('referral-scoped access', () => {
  it('the rule: TREAT only; open statuses; completed and failed for N days; owner reads supportingInfo and for, requester reads output', () => {
    expect(referralAccessRule(30)).toEqual({
      basis: 'referral',
      purposes: ['TREAT'],
      openStatuses: ['requested', 'received', 'accepted', 'in-progress', 'on-hold'],
      graceStatuses: ['completed', 'failed'],
      graceDays: 30,
      owner: { serviceRequest: ['supportingInfo'], task: ['for'] },
      requester: { task: ['output'] },
    });
  });

  it.each(['requested', 'received', 'accepted', 'in-progress', 'on-hold'] as const)('open (%s): the owner reads the supporting data and the patient, with no end', (status) => {
    expect(referralAccessGrants(task(status), sr, NOW, 30)).toEqual([owner]);
  });

  it.each(['rejected', 'cancelled', 'entered-in-error', 'draft', 'ready'] as const)('%s ends it at once', (status) => {
    expect(referralAccessGrants(task(status, NOW.toISOString(), { output: [{ type: { text: 'n' }, valueReference: { reference: 'DocumentReference/d1' } }] }), sr, NOW, 30)).toEqual([]);
  });

  it('completed: the owner keeps access and the requester reads the outputs until N days after the closing version, then neither', () => {
    const done = task('completed', '2026-02-20T12:00:00Z', { output: [{ type: { text: 'consult note' }, valueReference: { reference: 'DocumentReference/d1' } }, { type: { text: 'x' }, valueString: 'no reference' }] });
    const until = '2026-03-22T12:00:00.000Z';
    expect(referralAccessGrants(done, sr, NOW, 30)).toEqual([
      { ...owner, until },
      { basis: 'referral', referral: 'Task/t1', organization: 'a', purpose: 'TREAT', resources: ['DocumentReference/d1'], until },
    ]);
    expect(referralAccessGrants(done, sr, new Date('2026-03-22T12:00:00Z'), 30)).toEqual([]);
    expect(referralAccessGrants(task('failed'), sr, NOW, 5)).toEqual([]);
    expect(referralAccessGrants(task('failed'), sr, NOW, 10)).toEqual([{ ...owner, until: '2026-03-02T12:00:00.000Z' }]);
  });

  it('not a referral, or a ServiceRequest that is not its focus: no supporting data', () => {
    expect(referralAccessGrants({ ...task('accepted'), meta: {} }, sr, NOW, 30)).toEqual([]);
    expect(referralAccessGrants(task('accepted'), { ...sr, id: 'other' }, NOW, 30)).toEqual([{ ...owner, resources: ['Patient/p1'] }]);
    expect(referralAccessGrants(task('completed', 'not a date'), sr, NOW, 30)).toEqual([]);
  });
});
