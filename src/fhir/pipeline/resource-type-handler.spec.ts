import type { AccessFragment } from './access-predicate';
import { renderFragments } from './access-predicate';
import { buildInteraction } from './interaction';
import type { Principal } from './principal';
import { ResourceTypeHandlers } from './resource-type-handler';
import { SqlParams } from '../storage/sql-params';

const hospital: Principal = { kind: 'client', clientId: 'c1', organization: 'org-a', role: 'hospital', scopes: [] };
const consent: AccessFragment = { basis: 'consent', description: 'policy opt-out', render: (alias, bind) => `${alias}.author_org = ${bind.bind('org-a')} OR NOT ${alias}.compartments && ARRAY[${bind.bind('p1')}]` };
const custodian: AccessFragment = { basis: 'policy', description: 'its custodian organization only', render: (alias, bind) => `${alias}.author_org = ${bind.bind('org-a')}` };

function registry(): ResourceTypeHandlers {
  const handlers = new ResourceTypeHandlers();
  handlers.register({ resourceType: 'AuditEvent', readRule: () => custodian });
  return handlers;
}

describe('ResourceTypeHandlers (per-type handlers, issue 21)', () => {
  it('puts the type rule in the place of consent for rows of the type, at any alias and row kind', () => {
    const [fragment, ...rest] = registry().withTypeRules(hospital, buildInteraction('history-system', { path: '/_history' }), [consent]);
    expect(rest).toEqual([]);
    expect(fragment.basis).toBe('consent');
    expect(fragment.description).toBe('policy opt-out; AuditEvent: its custodian organization only');
    const p = new SqlParams();
    expect(renderFragments([fragment], 'h', p, 'version')).toBe(
      '((h.resource_type NOT IN ($3) AND (h.author_org = $1 OR NOT h.compartments && ARRAY[$2])) OR (h.resource_type = $4 AND (h.author_org = $5)))',
    );
    expect(p.values).toEqual(['org-a', 'p1', 'AuditEvent', 'AuditEvent', 'org-a']);
  });

  it("applies to the type's own interactions and operations, not to a type-level interaction on another type", () => {
    const handlers = registry();
    const own = handlers.withTypeRules(hospital, buildInteraction('read', { resourceType: 'AuditEvent', id: 'x', path: '/AuditEvent/x' }), [consent]);
    expect(own[0].description).toContain('AuditEvent: its custodian organization only');
    const other = [consent];
    expect(handlers.withTypeRules(hospital, buildInteraction('search-type', { resourceType: 'Observation', path: '/Observation' }), other)).toBe(other);
  });

  it('refuses a second handler for one type', () => {
    const handlers = registry();
    expect(() => handlers.register({ resourceType: 'AuditEvent' })).toThrow('A handler for AuditEvent is already registered');
    expect(handlers.get('AuditEvent')?.resourceType).toBe('AuditEvent');
    expect(handlers.get('Patient')).toBeUndefined();
  });
});
