import { buildInteraction, InteractionKind } from '../fhir/pipeline/interaction';
import { interactionMayReach } from './restriction-scope';

const REFERRAL = ['Task', 'ServiceRequest'];
const on = (kind: InteractionKind, resourceType: string | undefined, query: Record<string, string> = {}) =>
  buildInteraction(kind, { ...(resourceType ? { resourceType } : {}), id: 'x', versionId: '1', compartment: { type: 'Patient', id: 'p' }, operation: 'everything', query, path: '' });

describe('interactionMayReach (where a read restriction must be rendered)', () => {
  it('leaves it out only for one-type interactions on other types that follow no reference', () => {
    expect(interactionMayReach(on('search-type', 'Observation', { subject: 'Patient/p', code: 'http://loinc.org|8867-4' }), REFERRAL)).toBe(false);
    expect(interactionMayReach(on('read', 'Observation'), REFERRAL)).toBe(false);
    expect(interactionMayReach(on('vread', 'Patient'), REFERRAL)).toBe(false);
    expect(interactionMayReach(on('update', 'Condition'), REFERRAL)).toBe(false);
    expect(interactionMayReach(on('history-instance', 'Observation'), REFERRAL)).toBe(false);
    expect(interactionMayReach(on('search-type', 'Observation', { 'code:text': 'hr', _count: '5', _sort: '-date' }), REFERRAL)).toBe(false);
  });

  it('renders it on its own types', () => {
    for (const type of REFERRAL) {
      expect(interactionMayReach(on('read', type), REFERRAL)).toBe(true);
      expect(interactionMayReach(on('search-type', type), REFERRAL)).toBe(true);
      expect(interactionMayReach(on('history-type', type), REFERRAL)).toBe(true);
    }
  });

  it('renders it wherever rows of any type can be judged: chains, _has, includes, system and compartment level, operations, Bundles', () => {
    expect(interactionMayReach(on('search-type', 'Observation', { 'based-on:ServiceRequest.status': 'active' }), REFERRAL)).toBe(true);
    expect(interactionMayReach(on('search-type', 'Observation', { 'subject.name': 'x' }), REFERRAL)).toBe(true);
    expect(interactionMayReach(on('search-type', 'Patient', { '_has:Task:patient:status': 'requested' }), REFERRAL)).toBe(true);
    expect(interactionMayReach(on('search-type', 'Observation', { _include: 'Observation:based-on' }), REFERRAL)).toBe(true);
    expect(interactionMayReach(on('search-type', 'Patient', { _revinclude: 'Task:patient' }), REFERRAL)).toBe(true);
    expect(interactionMayReach(on('search-type', 'Patient', { '_revinclude:iterate': 'Task:focus' }), REFERRAL)).toBe(true);
    expect(interactionMayReach(on('search-system', undefined, { _type: 'Observation' }), REFERRAL)).toBe(true);
    expect(interactionMayReach(on('history-system', undefined), REFERRAL)).toBe(true);
    expect(interactionMayReach(on('search-compartment', 'Observation'), REFERRAL)).toBe(true);
    expect(interactionMayReach(on('operation', 'Patient'), REFERRAL)).toBe(true);
    expect(interactionMayReach(on('transaction', undefined), REFERRAL)).toBe(true);
  });
});
