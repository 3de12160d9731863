import { refusal } from '../common/fhir-error.testing';
import { SqlParams } from '../fhir/storage/sql-params';
import { parseSmartScope, SmartScope } from './smart-scope';
import { restrictionClauses, scopeRestrictionFragment } from './scope-restriction';

const scope = (raw: string): SmartScope => parseSmartScope(raw) as SmartScope;

describe('SMART v2 scope restrictions (?param=value) as search clauses', () => {
  it('parses each plain parameter into a clause on the scope type, a repeated parameter into one clause each', () => {
    const clauses = restrictionClauses(scope('system/Observation.rs?category=laboratory&category=vital-signs&code:text=pressure&_id=o1'));
    expect(clauses.map((c) => (c.kind === 'param' ? [c.def.code, c.modifier, c.resourceType, c.values] : c.kind))).toEqual([
      ['category', undefined, 'Observation', ['laboratory']],
      ['category', undefined, 'Observation', ['vital-signs']],
      ['code', 'text', 'Observation', ['pressure']],
      ['_id', undefined, 'Observation', ['o1']],
    ]);
  });

  it('a scope without restrictions restricts nothing', () => {
    expect(restrictionClauses(scope('system/Observation.rs'))).toEqual([]);
  });

  it.each([
    ['a chain', 'system/Observation.rs?subject.name=x', "scope system/Observation.rs?subject.name=x: 'subject.name' chains; only plain search parameters may restrict a scope"],
    ['a reverse chain', 'system/Patient.rs?_has:Observation:subject:code=1', "scope system/Patient.rs?_has:Observation:subject:code=1: '_has:Observation:subject:code' chains; only plain search parameters may restrict a scope"],
    ['full text (_content)', 'system/Observation.rs?_content=x', 'scope system/Observation.rs?_content=x: _content cannot restrict a scope'],
    ['full text (_text)', 'system/Observation.rs?_text=x', 'scope system/Observation.rs?_text=x: _text cannot restrict a scope'],
    ['a value set (:in)', 'system/Observation.rs?code:in=http://vs', 'scope system/Observation.rs?code:in=http://vs: code:in cannot restrict a scope'],
    ['a value set (:not-in)', 'system/Observation.rs?code:not-in=http://vs', 'scope system/Observation.rs?code:not-in=http://vs: code:not-in cannot restrict a scope'],
    ['a hierarchy (:above)', 'system/Observation.rs?code:above=http://loinc.org|1', 'scope system/Observation.rs?code:above=http://loinc.org|1: code:above cannot restrict a scope'],
    ['a hierarchy (:below)', 'system/Observation.rs?code:below=http://loinc.org|1', 'scope system/Observation.rs?code:below=http://loinc.org|1: code:below cannot restrict a scope'],
    ['a result parameter (_count)', 'system/Observation.rs?_count=5', 'scope system/Observation.rs?_count=5: only search parameters of Observation may restrict a scope'],
    ['a result parameter beside a search parameter (_sort)', 'system/Observation.rs?code=1&_sort=date', 'scope system/Observation.rs?code=1&_sort=date: only search parameters of Observation may restrict a scope'],
  ])('refuses %s with a 400 on the scopes', (_name, raw, diagnostics) => {
    expect(refusal(() => restrictionClauses(scope(raw)))).toEqual([400, 'invalid', diagnostics, ['scopes']]);
  });

  it('refuses a parameter the type does not have, as search does (strict)', () => {
    expect(refusal(() => restrictionClauses(scope('system/Observation.rs?foo=1')))).toEqual([400, 'not-supported', "Unknown or unsupported search parameter 'foo' for Observation", ['foo']]);
  });
});

describe('scopeRestrictionFragment: one access fragment for every restricted type', () => {
  it('is absent when no scope is restricted', () => {
    expect(scopeRestrictionFragment(new Map(), 'http://hie/fhir')).toBeUndefined();
  });

  it('admits per type the rows matching any of its scopes (each an AND of its clauses), binding into the outer statement', () => {
    const fragment = scopeRestrictionFragment(
      new Map([
        ['Patient', [scope('system/Patient.rs?gender=female'), scope('system/Patient.rs?gender=male&active=true')]],
        ['Observation', [scope('system/Observation.rs?category=laboratory')]],
      ]),
      'http://hie/fhir',
    )!;
    expect({ ...fragment, render: undefined }).toEqual({
      basis: 'scope',
      description: 'scope system/Patient.rs?gender=female system/Patient.rs?gender=male&active=true system/Observation.rs?category=laboratory',
      // Current versions only: a restricted scope allows no history or vread.
      rows: ['current'],
      render: undefined,
    });
    const params = new SqlParams();
    params.bind('outer-1');
    expect(fragment.render('r', params, 'current')).toBe(
      '(r.resource_type <> $11 OR (r.id IN (SELECT x1.id FROM search_token x1 WHERE x1.resource_type = $2 AND x1.param = $3 AND (x1.code = $4)))' +
        ' OR (r.id IN (SELECT x2.id FROM search_token x2 WHERE x2.resource_type = $5 AND x2.param = $6 AND (x2.code = $7))' +
        ' AND r.id IN (SELECT x3.id FROM search_token x3 WHERE x3.resource_type = $8 AND x3.param = $9 AND (x3.code = $10))))' +
        ' AND (r.resource_type <> $15 OR (r.id IN (SELECT x4.id FROM search_token x4 WHERE x4.resource_type = $12 AND x4.param = $13 AND (x4.code = $14))))',
    );
    expect(params.values).toEqual(['outer-1', 'Patient', 'gender', 'female', 'Patient', 'gender', 'male', 'Patient', 'active', 'true', 'Patient', 'Observation', 'category', 'laboratory', 'Observation']);
  });

  it('describes at most 200 characters of the scopes', () => {
    const long = scope(`system/Observation.rs?code=${'1'.repeat(250)}`);
    const fragment = scopeRestrictionFragment(new Map([['Observation', [long]]]), 'http://hie/fhir')!;
    expect(fragment.description).toBe(`scope ${long.raw.slice(0, 200)}`);
    expect(fragment.description).toHaveLength(206);
  });

  it('refuses a bad restriction when the fragment is made, not when it is rendered in SQL', () => {
    const make = () => scopeRestrictionFragment(new Map([['Observation', [scope('system/Observation.rs?_count=5')]]]), 'http://hie/fhir');
    expect(refusal(make)[0]).toBe(400);
  });
});
