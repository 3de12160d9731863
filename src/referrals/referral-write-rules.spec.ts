import type { Task } from '@medplum/fhirtypes';
import { referralServiceRequest, referralTask } from './referral-fixtures';
import { changedElements, judgeServiceRequestChange, judgeTaskChange, partyOf, stateLine } from './referral-write-rules';

const task = (extra: Partial<Task> = {}): Task => referralTask({ authoredOn: '2026-01-01T00:00:00Z', ...extra });
const sr = referralServiceRequest;

describe('referral write rules', () => {
  it('parties: requester first, then owner; none without an organization or a match', () => {
    expect(partyOf('a', 'Organization/a', 'Organization/b')).toBe('requester');
    expect(partyOf('b', 'Organization/a', 'Organization/b')).toBe('owner');
    expect(partyOf('a', 'Organization/a', 'Organization/a')).toBe('requester');
    expect(partyOf('c', 'Organization/a', 'Organization/b')).toBeUndefined();
    expect(partyOf(undefined, 'Organization/a', 'Organization/b')).toBeUndefined();
    expect(partyOf('a', 'Practitioner/a', 'Organization/b')).toBeUndefined();
  });

  it('changed elements ignore id, meta and text', () => {
    expect(changedElements(task(), { ...task({ status: 'accepted', note: [{ text: 'x' }] }), id: 'other', meta: {}, text: { status: 'generated', div: '<div/>' } })).toEqual(['note', 'status']);
    expect(changedElements(task(), task())).toEqual([]);
  });

  it('the state line names the state and the party transitions', () => {
    expect(stateLine(task(), 'owner')).toBe('Task/t1 is requested; the owner (Organization/b) may make: received, accepted, rejected');
    expect(stateLine(task({ status: 'completed' }), 'requester')).toBe('Task/t1 is completed; the requester (Organization/a) may make: entered-in-error');
    expect(stateLine(task(), undefined)).toBe('Task/t1 is requested; this organization may make: no transition');
  });

  it.each([
    ['owner accepts', 'b', { status: 'accepted' }, 'permit', 'Task/t1 requested -> accepted by the owner Organization/b'],
    ['owner skips to in-progress with an output', 'b', { status: 'in-progress', output: [{ type: { text: 'n' }, valueString: 'x' }] }, 'business-rule', 'requested -> in-progress'],
    ['owner sets businessStatus only', 'b', { businessStatus: { text: 'scheduled' } }, 'permit', 'Task/t1 businessStatus by the owner Organization/b'],
    ['requester edits note', 'a', { note: [{ text: 'x' }] }, 'permit', 'Task/t1 note by the requester Organization/a'],
    ['requester cancels', 'a', { status: 'cancelled' }, 'permit', 'Task/t1 requested -> cancelled by the requester Organization/a'],
    ['requester accepts', 'a', { status: 'accepted' }, 'forbidden', 'requested -> accepted is not a transition the requester may make'],
    ['owner edits note', 'b', { note: [{ text: 'x' }] }, 'forbidden', "Task.note is the requester's to change"],
    ['requester adds output', 'a', { output: [{ type: { text: 'n' }, valueString: 'x' }] }, 'forbidden', "Task.output is the owner's to change"],
    ['owner changes owner', 'b', { owner: { reference: 'Organization/c' } }, 'business-rule', 'Task.owner cannot change after the referral is created'],
    ['requester changes for', 'a', { for: { reference: 'Patient/p2' } }, 'business-rule', 'Task.for cannot change'],
    ['third party', 'c', { status: 'accepted' }, 'forbidden', 'Organization/c is not a party to this referral: Task/t1 is requested; this organization may make: no transition'],
  ] as const)('%s: %s', (_name, org, change, verdict, text) => {
    const judged = judgeTaskChange(task(), task(change as Partial<Task>), org, true);
    expect(judged.verdict).toBe(verdict);
    expect(judged.verdict === 'permit' ? judged.reason : judged.message).toContain(text);
  });

  it('a closed referral (completed, failed, rejected, cancelled) changes only by a transition: no output, businessStatus or note edits', () => {
    expect(judgeTaskChange(task({ status: 'completed' }), task({ status: 'completed', businessStatus: { text: 'late' } }), 'b', true)).toEqual({
      verdict: 'business-rule',
      message: 'the referral is closed; only its status may change. Task/t1 is completed; the owner (Organization/b) may make: no transition',
    });
    expect(judgeTaskChange(task({ status: 'cancelled' }), task({ status: 'cancelled', note: [{ text: 'x' }] }), 'a', true).verdict).toBe('business-rule');
    expect(judgeTaskChange(task({ status: 'completed' }), task({ status: 'entered-in-error', note: [{ text: 'wrong patient' }] }), 'a', true).verdict).toBe('permit');
    expect(judgeTaskChange(task({ status: 'on-hold' }), task({ status: 'on-hold', businessStatus: { text: 'waiting' } }), 'b', true).verdict).toBe('permit');
  });

  it('the referral profile claim stays: dropping it (alone or with a legal change) is 422, so no write takes a referral out of its rules', () => {
    expect(judgeTaskChange(task(), { ...task({ status: 'accepted' }), meta: { versionId: '1' } }, 'b', true)).toMatchObject({ verdict: 'business-rule', message: expect.stringContaining('Task.meta.profile must keep http://hie.example.org/fhir/StructureDefinition/hie-referral-task') });
    expect(judgeTaskChange(task(), { ...task(), meta: {} }, 'a', true).verdict).toBe('business-rule');
    const profiled = sr();
    expect(judgeServiceRequestChange(profiled, { ...sr(), meta: {} }, 'a', true)).toMatchObject({ verdict: 'business-rule', message: expect.stringContaining('ServiceRequest.meta.profile must keep') });
    expect(judgeServiceRequestChange(profiled, { ...profiled, note: [{ text: 'x' }] }, 'a', true).verdict).toBe('permit');
  });

  it('no change is permitted without If-Match; any change without it is a precondition naming the state', () => {
    expect(judgeTaskChange(task(), task(), 'b', false)).toEqual({ verdict: 'permit', reason: 'Task/t1 unchanged by the owner' });
    expect(judgeTaskChange(task(), task({ status: 'accepted' }), 'b', false)).toEqual({
      verdict: 'precondition',
      message: 'a change of a referral needs If-Match with the version it changes. Task/t1 is requested; the owner (Organization/b) may make: received, accepted, rejected',
    });
    // A wrong party is told so before the precondition.
    expect(judgeTaskChange(task(), task({ status: 'cancelled' }), 'b', false).verdict).toBe('forbidden');
  });

  it('nobody deletes a referral Task; a non-party is told it is not a party first', () => {
    expect(judgeTaskChange(task(), undefined, 'a', true)).toEqual({ verdict: 'forbidden', message: 'a referral is not deleted; the requester cancels it. Task/t1 is requested; the requester (Organization/a) may make: cancelled, entered-in-error' });
    expect(judgeTaskChange(task(), undefined, 'b', true).verdict).toBe('forbidden');
    expect(judgeTaskChange(task(), undefined, 'c', true)).toMatchObject({ verdict: 'forbidden', message: expect.stringContaining('is not a party') });
  });

  it('the ServiceRequest: the requester edits its note (with If-Match); other elements 422; other organizations and deletes 403', () => {
    expect(judgeServiceRequestChange(sr(), sr({ note: [{ text: 'x' }] }), 'a', true)).toEqual({ verdict: 'permit', reason: 'ServiceRequest/s1 note by the requester Organization/a' });
    expect(judgeServiceRequestChange(sr(), sr({ note: [{ text: 'x' }] }), 'a', false).verdict).toBe('precondition');
    expect(judgeServiceRequestChange(sr(), sr(), 'a', false).verdict).toBe('permit');
    expect(judgeServiceRequestChange(sr(), sr({ priority: 'stat' }), 'a', true)).toMatchObject({ verdict: 'business-rule', message: expect.stringContaining('ServiceRequest.priority cannot change') });
    expect(judgeServiceRequestChange(sr(), sr({ note: [{ text: 'x' }] }), 'b', true).verdict).toBe('forbidden');
    expect(judgeServiceRequestChange(sr(), sr({ note: [{ text: 'x' }] }), 'c', true).verdict).toBe('forbidden');
    expect(judgeServiceRequestChange(sr(), undefined, 'a', true)).toMatchObject({ verdict: 'forbidden', message: expect.stringContaining('a referral is not deleted') });
  });

  it('edges the mutation run found unpinned: each editable element of each party, multi-element reasons, missing parties, exact ServiceRequest messages', () => {
    // Every element the owner may change alone, and the requester's lastModified.
    for (const [org, change] of [
      ['b', { statusReason: { text: 'r' } }],
      ['b', { executionPeriod: { start: '2026-01-02' } }],
      ['b', { lastModified: '2026-01-02T00:00:00Z' }],
      ['a', { lastModified: '2026-01-02T00:00:00Z' }],
    ] as const) {
      expect(judgeTaskChange(task(), task(change as Partial<Task>), org, true).verdict).toBe('permit');
    }
    expect(judgeTaskChange(task(), task({ businessStatus: { text: 's' }, statusReason: { text: 'r' } }), 'b', true)).toEqual({
      verdict: 'permit',
      reason: 'Task/t1 businessStatus, statusReason by the owner Organization/b',
    });
    // No organization is no party, even where the referral names none either.
    expect(partyOf(undefined, undefined, undefined)).toBeUndefined();
    expect(judgeTaskChange(task(), task({ status: 'accepted' }), undefined, true)).toEqual({
      verdict: 'forbidden',
      message: 'Organization/- is not a party to this referral: Task/t1 is requested; this organization may make: no transition',
    });
    // A stored referral missing a party reference is judged, not thrown on.
    expect(judgeTaskChange(task({ requester: undefined }), task({ requester: undefined, status: 'accepted' }), 'b', true).verdict).toBe('permit');
    expect(judgeTaskChange(task({ owner: undefined }), task({ owner: undefined, status: 'cancelled' }), 'a', true).verdict).toBe('permit');
    expect(stateLine(task({ owner: undefined }), 'owner')).toBe('Task/t1 is requested; the owner (Organization/undefined) may make: received, accepted, rejected');
    expect(stateLine(task({ requester: undefined }), 'requester')).toBe('Task/t1 is requested; the requester (Organization/undefined) may make: cancelled, entered-in-error');
    expect(judgeServiceRequestChange(sr({ requester: undefined }), sr({ requester: undefined }), 'a', true).verdict).toBe('forbidden');
    expect(judgeServiceRequestChange(sr({ performer: undefined }), sr({ performer: undefined, note: [{ text: 'x' }] }), 'a', true).verdict).toBe('permit');
    expect(judgeServiceRequestChange(sr({ performer: [] }), sr({ performer: [] }), 'b', true).verdict).toBe('forbidden');
    const line = 'ServiceRequest/s1 is active; the requester may change its note, the workflow is on its Task';
    expect(judgeServiceRequestChange(sr(), sr({ note: [{ text: 'x' }] }), 'b', true)).toEqual({ verdict: 'forbidden', message: `only the requester changes a referral's ServiceRequest. ${line}` });
    expect(judgeServiceRequestChange(sr(), sr({ note: [{ text: 'x' }] }), 'a', false)).toEqual({ verdict: 'precondition', message: `a change of a referral needs If-Match with the version it changes. ${line}` });
  });
});
