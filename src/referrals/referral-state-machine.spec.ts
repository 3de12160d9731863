import { allowedTransitions, isFinal, judgeTransition, OWNER_STATUSES, REFERRAL_INITIAL_STATUS, REQUESTER_STATUSES, TaskStatus } from './referral-state-machine';

const ALL: TaskStatus[] = ['draft', 'requested', 'received', 'accepted', 'rejected', 'ready', 'cancelled', 'in-progress', 'on-hold', 'failed', 'completed', 'entered-in-error'];

describe('referral Task state machine', () => {
  it('the owner: requested -> received | accepted | rejected; received -> accepted | rejected; accepted -> in-progress; in-progress <-> on-hold; in-progress -> completed | failed', () => {
    const table = Object.fromEntries(ALL.map((s) => [s, allowedTransitions(s, 'owner')]));
    expect(table).toEqual({
      draft: [],
      requested: ['received', 'accepted', 'rejected'],
      received: ['accepted', 'rejected'],
      accepted: ['in-progress'],
      rejected: [],
      ready: [],
      cancelled: [],
      'in-progress': ['on-hold', 'completed', 'failed'],
      'on-hold': ['in-progress'],
      failed: [],
      completed: [],
      'entered-in-error': [],
    });
  });

  it('the requester: cancels before completed or failed; entered-in-error from any state but itself', () => {
    const table = Object.fromEntries(ALL.map((s) => [s, allowedTransitions(s, 'requester')]));
    expect(table).toEqual({
      draft: ['entered-in-error'],
      requested: ['cancelled', 'entered-in-error'],
      received: ['cancelled', 'entered-in-error'],
      accepted: ['cancelled', 'entered-in-error'],
      rejected: ['entered-in-error'],
      ready: ['entered-in-error'],
      cancelled: ['entered-in-error'],
      'in-progress': ['cancelled', 'entered-in-error'],
      'on-hold': ['cancelled', 'entered-in-error'],
      failed: ['entered-in-error'],
      completed: ['entered-in-error'],
      'entered-in-error': [],
    });
  });

  it.each([
    ['requested', 'accepted', 'owner'],
    ['requested', 'received', 'owner'],
    ['received', 'rejected', 'owner'],
    ['accepted', 'in-progress', 'owner'],
    ['in-progress', 'on-hold', 'owner'],
    ['on-hold', 'in-progress', 'owner'],
    ['in-progress', 'completed', 'owner'],
    ['in-progress', 'failed', 'owner'],
    ['on-hold', 'cancelled', 'requester'],
    ['completed', 'entered-in-error', 'requester'],
  ] as const)('%s -> %s by the %s is allowed', (from, to, party) => {
    expect(judgeTransition(from, to, party)).toEqual({ allowed: true });
  });

  it.each([
    // Another party's status: 403.
    ['requested', 'accepted', 'requester', 'wrong-party', ['cancelled', 'entered-in-error']],
    ['in-progress', 'completed', 'requester', 'wrong-party', ['cancelled', 'entered-in-error']],
    ['requested', 'cancelled', 'owner', 'wrong-party', ['received', 'accepted', 'rejected']],
    ['completed', 'entered-in-error', 'owner', 'wrong-party', []],
    // The party's own kind of status, not from here: 422.
    ['requested', 'in-progress', 'owner', 'not-a-transition', ['received', 'accepted', 'rejected']],
    ['accepted', 'completed', 'owner', 'not-a-transition', ['in-progress']],
    ['rejected', 'accepted', 'owner', 'not-a-transition', []],
    ['completed', 'in-progress', 'owner', 'not-a-transition', []],
    ['on-hold', 'completed', 'owner', 'not-a-transition', ['in-progress']],
    ['completed', 'cancelled', 'requester', 'not-a-transition', ['entered-in-error']],
    ['failed', 'cancelled', 'requester', 'not-a-transition', ['entered-in-error']],
    ['entered-in-error', 'entered-in-error', 'requester', 'not-a-transition', []],
    // Nobody's status to set: 422 whoever asks.
    ['accepted', 'requested', 'owner', 'not-a-transition', ['in-progress']],
    ['requested', 'draft', 'requester', 'not-a-transition', ['cancelled', 'entered-in-error']],
    ['requested', 'ready', 'owner', 'not-a-transition', ['received', 'accepted', 'rejected']],
  ] as const)('%s -> %s by the %s is refused as %s, naming %j', (from, to, party, refusal, allowed) => {
    expect(judgeTransition(from, to, party)).toEqual({ allowed: false, refusal, allowedTransitions: allowed });
  });

  it('final states are rejected, cancelled, completed, failed, entered-in-error (and the never-created draft and ready)', () => {
    expect(ALL.filter(isFinal)).toEqual(['draft', 'rejected', 'ready', 'cancelled', 'failed', 'completed', 'entered-in-error']);
  });

  it('a referral starts requested', () => {
    expect(REFERRAL_INITIAL_STATUS).toBe('requested');
  });

  it('every owner status is a wrong party for the requester, every requester status for the owner; the rest is nobody\'s (422)', () => {
    expect(OWNER_STATUSES).toEqual(['received', 'accepted', 'rejected', 'in-progress', 'on-hold', 'completed', 'failed']);
    expect(REQUESTER_STATUSES).toEqual(['cancelled', 'entered-in-error']);
    // From a state where neither party may make it, so only the party decides the refusal.
    const refusal = (to: TaskStatus, party: 'owner' | 'requester') => {
      const j = judgeTransition('entered-in-error', to, party);
      return j.allowed ? 'allowed' : j.refusal;
    };
    expect(ALL.map((s) => [s, refusal(s, 'requester')])).toEqual(ALL.map((s) => [s, OWNER_STATUSES.includes(s) ? 'wrong-party' : 'not-a-transition']));
    expect(ALL.map((s) => [s, refusal(s, 'owner')])).toEqual(ALL.map((s) => [s, REQUESTER_STATUSES.includes(s) ? 'wrong-party' : 'not-a-transition']));
  });

  it('a state is open (not final) exactly when the owner can move on from it and the requester can cancel it', () => {
    for (const s of ALL) {
      expect([s, isFinal(s)]).toEqual([s, allowedTransitions(s, 'owner').length === 0]);
      expect([s, isFinal(s)]).toEqual([s, !allowedTransitions(s, 'requester').includes('cancelled')]);
    }
  });
});
