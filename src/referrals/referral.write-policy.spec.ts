import type { Resource } from '@medplum/fhirtypes';
import type { Interaction } from '../fhir/pipeline/interaction';
import type { Principal } from '../fhir/pipeline/principal';
import { WritePolicies, WriteProposal } from '../fhir/pipeline/write-policy';
import { referralServiceRequest, referralTask } from './referral-fixtures';
import { ReferralWritePolicy } from './referral.write-policy';

const task = referralTask;
const sr = referralServiceRequest;

/** A proposal as the write path builds it (no I/O: the policy judges only what it is given). */
const proposal = (organization: string | undefined, mode: WriteProposal['mode'], before: Resource | undefined, after: Resource | undefined): WriteProposal => ({
  principal: { organization } as Principal,
  interaction: { kind: mode === 'delete' ? 'delete' : 'update' } as Interaction,
  mode,
  resourceType: (before ?? after)!.resourceType,
  id: (before ?? after)!.id!,
  before: before ? { versionId: 1, deleted: false, resource: before, custodianOrg: 'a' } : undefined,
  after,
});

describe('ReferralWritePolicy (the registered write policy `referral`)', () => {
  const policy = new ReferralWritePolicy(new WritePolicies());

  it('registers itself for Task and ServiceRequest under its name, once', () => {
    const policies = new WritePolicies();
    const registered = new ReferralWritePolicy(policies);
    expect([registered.name, registered.resourceTypes]).toEqual(['referral', ['Task', 'ServiceRequest']]);
    expect([policies.judges('Task'), policies.judges('ServiceRequest'), policies.judges('Observation')]).toEqual([false, false, false]);
    registered.onModuleInit();
    expect([policies.judges('Task'), policies.judges('ServiceRequest'), policies.judges('Observation')]).toEqual([true, true, false]);
    expect(() => registered.onModuleInit()).toThrow("Write policy 'referral' is registered twice");
  });

  it('has no opinion on creates, on update-as-create, nor on Tasks and ServiceRequests that are not referrals', () => {
    expect(policy.decide(proposal('a', 'create', undefined, task()))).toBeUndefined();
    expect(policy.decide(proposal('c', 'update', undefined, task()))).toBeUndefined();
    const plain = task({ meta: { versionId: '1' } });
    expect(policy.decide(proposal('c', 'update', plain, { ...plain, status: 'accepted' }))).toBeUndefined();
    expect(policy.decide(proposal('c', 'delete', plain, undefined))).toBeUndefined();
    // The create mode decides even with a stored row (a create is the default policy's).
    expect(policy.decide(proposal('c', 'create', task(), task({ status: 'accepted' })))).toBeUndefined();
  });

  it("permits a party's own change with the state machine's reason", () => {
    expect(policy.decide(proposal('b', 'update', task(), task({ status: 'accepted' })))).toEqual({ permit: true, reason: 'Task/t1 requested -> accepted by the owner Organization/b' });
    expect(policy.decide(proposal('a', 'update', task(), task({ status: 'cancelled' })))).toEqual({ permit: true, reason: 'Task/t1 requested -> cancelled by the requester Organization/a' });
    expect(policy.decide(proposal('a', 'update', sr(), sr({ note: [{ text: 'x' }] })))).toEqual({ permit: true, reason: 'ServiceRequest/s1 note by the requester Organization/a' });
  });

  it('denies the other party, a third organization, a principal without one, and every delete, with the reason naming the state', () => {
    expect(policy.decide(proposal('a', 'update', task(), task({ status: 'accepted' })))).toEqual({
      permit: false,
      reason: expect.stringContaining('requested -> accepted is not a transition the requester may make'),
    });
    expect(policy.decide(proposal('c', 'update', task(), task({ status: 'accepted' })))).toEqual({
      permit: false,
      reason: 'Organization/c is not a party to this referral: Task/t1 is requested; this organization may make: no transition',
    });
    expect(policy.decide(proposal(undefined, 'update', task(), task({ status: 'accepted' })))?.permit).toBe(false);
    expect(policy.decide(proposal('a', 'delete', task(), undefined))).toEqual({
      permit: false,
      reason: 'a referral is not deleted; the requester cancels it. Task/t1 is requested; the requester (Organization/a) may make: cancelled, entered-in-error',
    });
    expect(policy.decide(proposal('b', 'update', sr(), sr({ note: [{ text: 'x' }] })))?.permit).toBe(false);
    expect(policy.decide(proposal('a', 'delete', sr(), undefined))).toMatchObject({ permit: false, reason: expect.stringContaining('a referral is not deleted') });
  });

  it("leaves If-Match (412) and the state machine's 422 to the validate listener: a party's change is permitted here, naming what the listener checks", () => {
    // A wrong transition of the owner's own kind: 422 for the listener, a permit here.
    expect(policy.decide(proposal('b', 'update', task(), task({ status: 'completed' })))).toEqual({ permit: true, reason: "a party's change of Task/t1, checked by the referral rules" });
    expect(policy.decide(proposal('a', 'update', sr(), sr({ priority: 'stat' })))).toEqual({ permit: true, reason: "a party's change of ServiceRequest/s1, checked by the referral rules" });
  });

  it('judges a ServiceRequest by the ServiceRequest rules and a Task by the Task rules', () => {
    // The owner may accept a Task; the same party may not touch the request (it is the requester's).
    expect(policy.decide(proposal('b', 'update', sr(), sr({ note: [{ text: 'x' }] })))).toMatchObject({ permit: false });
    expect(policy.decide(proposal('b', 'update', task(), task({ businessStatus: { text: 'scheduled' } })))).toEqual({ permit: true, reason: 'Task/t1 businessStatus by the owner Organization/b' });
  });
});
