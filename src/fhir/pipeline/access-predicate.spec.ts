import { AccessContext, AccessGrant } from './access-context';
import { AccessFragment, denyAll, renderFragments } from './access-predicate';
import type { Principal } from './principal';
import { SqlParams } from '../storage/sql-params';
import { SearchSqlCompiler } from '../search/search-sql.compiler';
import { parseSearchRequest } from '../search/search-request';
import { parseSmartScope, SmartScope } from '../../auth/smart-scope';
import { scopeRestrictionFragment } from '../../auth/scope-restriction';

const issue = AccessContext.claimIssuer();
const context = (read: AccessFragment[], write: AccessFragment[] = []): AccessContext =>
  issue({
    principal: { kind: 'client', clientId: 'c1', organization: 'org-a', role: 'hospital', scopes: [] } as Principal,
    read,
    write,
    lookups: { mayRead: () => true, lookup: () => Promise.reject(new Error('none')) },
  } satisfies AccessGrant);

const hidePatient = (patient: string): AccessFragment => ({
  basis: 'consent',
  description: 'hide one patient',
  render: (alias, bind) => `NOT (${alias}.compartments @> ARRAY[${bind.bind(patient)}]::text[])`,
});
const ownOrganization: AccessFragment = { basis: 'policy', description: 'own org', render: (alias, bind) => `${alias}.author_org = ${bind.bind('org-a')}` };

describe('access predicate fragments', () => {
  it('render for the alias they are given, binding values into the statement being built', () => {
    const p = new SqlParams();
    p.bind('Patient');
    expect(renderFragments([hidePatient('p1'), ownOrganization], 'h', p, 'version')).toBe(
      '(NOT (h.compartments @> ARRAY[$2]::text[])) AND (h.author_org = $3)',
    );
    expect(p.values).toEqual(['Patient', 'p1', 'org-a']);
  });

  it('render TRUE for no fragments and FALSE for deny-all', () => {
    const p = new SqlParams();
    expect(renderFragments([], 'r', p)).toBe('TRUE');
    expect(renderFragments([denyAll('policy', 'nothing')], 'r', p)).toBe('(FALSE)');
    expect(p.values).toEqual([]);
  });

  it('refuse an alias that is not a plain identifier, and a current-only fragment on version rows', () => {
    expect(() => renderFragments([ownOrganization], 'r; DROP TABLE resource', new SqlParams())).toThrow("Invalid SQL alias 'r; DROP TABLE resource'");
    const currentOnly: AccessFragment = { ...ownOrganization, rows: ['current'] };
    expect(() => renderFragments([currentOnly], 'h', new SqlParams(), 'version')).toThrow("Access fragment 'own org' cannot judge version rows");
  });

  it('judge current rows when no row kind is given', () => {
    const currentOnly: AccessFragment = { ...ownOrganization, rows: ['current'] };
    const p = new SqlParams();
    expect(renderFragments([currentOnly], 'r', p)).toBe('(r.author_org = $1)');
    expect(p.values).toEqual(['org-a']);
  });

  it('the write condition is the read predicate AND the write rule', () => {
    const ctx = context([hidePatient('p1')], [ownOrganization]);
    const p = new SqlParams();
    expect(ctx.renderWrite('r', p)).toBe('(NOT (r.compartments @> ARRAY[$1]::text[])) AND (r.author_org = $2)');
    expect(p.values).toEqual(['p1', 'org-a']);
  });
});

describe('the search compiler with access fragments', () => {
  it('applies the predicate at the root and inside every chain and _has sub-select, each at its own alias', () => {
    const ctx = context([hidePatient('p1')]);
    const ast = parseSearchRequest(['Observation'], { 'subject:Patient.name': 'anna', '_has:Provenance:target:agent': 'Practitioner/x' }, { strict: true });
    const compiler = new SearchSqlCompiler(ctx, 'http://hie/fhir');
    const sql = compiler.where(ast).replace(/\s+/g, ' ');
    const rendered = [...sql.matchAll(/NOT \((\w+)\.compartments @> ARRAY\[\$(\d+)\]::text\[\]\)/g)].map((m) => [m[1], compiler.params.values[Number(m[2]) - 1]]);
    // Root (r) plus the chain target (b…) and the _has source (b…): three renderings, each bound anew.
    expect(rendered.map(([alias]) => alias)).toEqual(['b2', 'b5', 'r']);
    expect(rendered.map(([, value]) => value)).toEqual(['p1', 'p1', 'p1']);
    // Every placeholder has exactly one bound value; no value is inlined.
    const placeholders = [...sql.matchAll(/\$(\d+)/g)].map((m) => Number(m[1]));
    expect(Math.max(...placeholders)).toBe(compiler.params.values.length);
    expect(sql).not.toContain("'p1'");
    expect(sql).not.toContain('anna');
  });

  it('renders a scope query fragment inside a nested sub-select with parameters of the outer statement', () => {
    const scope = parseSmartScope('system/Patient.rs?gender=female') as SmartScope;
    const fragment = scopeRestrictionFragment(new Map([['Patient', [scope]]]), 'http://hie/fhir')!;
    const ctx = context([fragment]);
    const compiler = new SearchSqlCompiler(ctx, 'http://hie/fhir');
    const sql = compiler.where(parseSearchRequest(['Observation'], { 'subject:Patient.name': 'anna' }, { strict: true })).replace(/\s+/g, ' ');
    // At the chain target the restriction applies to the Patient rows (alias b…), at the root to r.
    expect(sql).toMatch(/\(b2\.resource_type <> \$\d+ OR \(b2\.id IN \(SELECT x\d+\.id FROM search_token x\d+ WHERE x\d+\.resource_type = \$\d+ AND x\d+\.param = \$\d+ AND \(x\d+\.code = \$\d+\)\)\)\)/);
    expect(sql).toMatch(/\(r\.resource_type <> \$\d+ OR \(r\.id IN \(SELECT/);
    expect(compiler.params.values.filter((v) => v === 'female')).toHaveLength(2);
    const placeholders = [...sql.matchAll(/\$(\d+)/g)].map((m) => Number(m[1]));
    expect(new Set(placeholders).size).toBe(compiler.params.values.length);
  });
});
