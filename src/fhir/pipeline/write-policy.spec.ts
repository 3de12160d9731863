import type { Interaction } from './interaction';
import type { Principal } from './principal';
import { WritePolicies, WritePolicy, WriteProposal } from './write-policy';

const hospital: Principal = { kind: 'client', clientId: 'c', organization: 'org-b', role: 'hospital', scopes: [] };
const proposal: WriteProposal = {
  principal: hospital,
  interaction: { kind: 'update', resourceType: 'Task', id: 't1', query: {}, path: '/Task/t1' } as Interaction,
  mode: 'update',
  resourceType: 'Task',
  id: 't1',
  before: { versionId: 1, deleted: false, custodianOrg: 'org-a', authorOrg: 'org-a' },
};
const policy = (name: string, answer: boolean | undefined, types = ['Task']): WritePolicy => ({
  name,
  resourceTypes: types,
  decide: () => (answer === undefined ? undefined : { permit: answer, reason: `${name} says ${answer}` }),
});

describe('WritePolicies: combining the default policy with registered ones', () => {
  it('without registered policies the default decides alone, with its reason', () => {
    const policies = new WritePolicies();
    expect(policies.judges('Task')).toBe(false);
    expect(policies.decide(proposal, true, true)).toEqual({ policy: 'custodian-organization', permit: true, reason: 'Organization/org-b is the custodian' });
    expect(policies.decide(proposal, false, true)).toEqual({ policy: 'custodian-organization', permit: false, reason: 'not the custodian organization, or hidden or missing' });
    expect(policies.decide({ ...proposal, mode: 'create', before: undefined }, true, false).reason).toBe('create: Organization/org-b becomes the custodian');
  });

  it('a registered permit opens what the default refuses; a registered deny wins over a default permit and over other permits', () => {
    const policies = new WritePolicies();
    policies.register(policy('owner', true));
    policies.register(policy('abstains', undefined));
    expect(policies.judges('Task')).toBe(true);
    expect(policies.decide(proposal, false, true)).toEqual({ policy: 'owner', permit: true, reason: 'owner says true' });
    // Where the default permits, it is the one recorded.
    expect(policies.decide(proposal, true, true).policy).toBe('custodian-organization');
    policies.register(policy('no-cancel', false));
    expect(policies.decide(proposal, true, true)).toEqual({ policy: 'no-cancel', permit: false, reason: 'no-cancel says false' });
    expect(policies.decide(proposal, false, true)).toEqual({ policy: 'no-cancel', permit: false, reason: 'no-cancel says false' });
  });

  it('policies judge only their types, and a name registers once', () => {
    const policies = new WritePolicies();
    policies.register(policy('observations', true, ['Observation']));
    expect(policies.judges('Task')).toBe(false);
    expect(policies.decide(proposal, false, true).permit).toBe(false);
    expect(() => policies.register(policy('observations', true))).toThrow("Write policy 'observations' is registered twice");
  });
});
