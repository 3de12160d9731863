import { SqlParams } from '../fhir/storage/sql-params';
import type { Principal } from '../fhir/pipeline/principal';
import { writeRuleFragments } from './write-rule';

const client = (over: Partial<Principal>): Principal => ({ kind: 'client', clientId: 'c1', scopes: ['system/*.cruds'], ...over });

describe('default write policy: the custodian organization may write', () => {
  it('binds the hospital organization against the row custodian, at the alias given', () => {
    const [fragment, ...rest] = writeRuleFragments(client({ role: 'hospital', organization: 'org-a' }));
    expect(rest).toEqual([]);
    expect(fragment).toMatchObject({ basis: 'policy', description: 'write rule: custodian organization' });
    const params = new SqlParams();
    expect(fragment.render('r2', params, 'current')).toBe('r2.custodian_org = $1');
    expect(params.values).toEqual(['org-a']);
  });

  it('lets admins write whoever is custodian: no fragment at all', () => {
    expect(writeRuleFragments(client({ role: 'admin', organization: 'org-admin' }))).toEqual([]);
    expect(writeRuleFragments(client({ role: 'admin' }))).toEqual([]);
  });

  it.each([
    ['a hospital client without an organization', client({ role: 'hospital' })],
    ['a public-health client without an organization', client({ role: 'public-health', organization: '' })],
  ])('denies %s every existing row, binding nothing', (_name, principal) => {
    const fragments = writeRuleFragments(principal);
    expect(fragments.map((f) => [f.basis, f.description])).toEqual([['policy', 'write rule: no organization']]);
    const params = new SqlParams();
    expect(fragments[0].render('r', params, 'current')).toBe('FALSE');
    expect(params.values).toEqual([]);
  });
});
