import { refusal } from '../../common/fhir-error.testing';
import type { QueryParams } from '../pipeline/interaction';
import { Clause, encodeCursor, MAX_COUNT, ParamClause, parseSearchRequest, splitPrefix, splitValues } from './search-request';
import { SEARCH_LIMITS } from './search-limits';

const strict = { strict: true };
const parse = (query: QueryParams, types = ['Patient'], options: { strict: boolean } = strict) => parseSearchRequest(types, query, options);
/** The clauses for one type, with each definition reduced to its code (the rest is the registry's). */
const clauses = (query: QueryParams, type = 'Patient'): unknown[] => parse(query, [type]).clauses.get(type)!.map(summarize);
function summarize(c: Clause): unknown {
  if (c.kind === 'param') return { param: c.def.code, type: c.def.type, modifier: c.modifier, missing: c.missing, values: c.values };
  if (c.kind === 'chain') return { chain: c.def.code, target: c.targetType, inner: summarize(c.inner) };
  if (c.kind === 'untyped-chain') return { untyped: c.def.code, chains: c.chains.map(summarize) };
  return { has: c.sourceType, via: c.referenceParam, inner: summarize(c.inner) };
}

describe('search request parser: clauses', () => {
  it('one clause per occurrence, OR values split on unescaped commas', () => {
    expect(clauses({ gender: 'male,female', name: ['anna', 'a\\,b'] })).toEqual([
      { param: 'gender', type: 'token', modifier: undefined, missing: undefined, values: ['male', 'female'] },
      { param: 'name', type: 'string', modifier: undefined, missing: undefined, values: ['anna'] },
      { param: 'name', type: 'string', modifier: undefined, missing: undefined, values: ['a\\,b'] },
    ]);
  });

  it(':missing carries a boolean and no values', () => {
    expect(clauses({ 'gender:missing': 'true', 'birthdate:missing': 'false' })).toEqual([
      { param: 'gender', type: 'token', modifier: 'missing', missing: true, values: [] },
      { param: 'birthdate', type: 'date', modifier: 'missing', missing: false, values: [] },
    ]);
  });

  it('a type modifier on a reference turns bare ids into Type/id', () => {
    expect(clauses({ 'subject:Patient': 'p1,Patient/p2' }, 'Observation')).toEqual([
      { param: 'subject', type: 'reference', modifier: 'Patient', missing: undefined, values: ['Patient/p1', 'Patient/p2'] },
    ]);
  });

  it('chains resolve the inner parameter on the target type', () => {
    expect(clauses({ 'subject:Patient.name': 'anna' }, 'Observation')).toEqual([
      { chain: 'subject', target: 'Patient', inner: { param: 'name', type: 'string', modifier: undefined, missing: undefined, values: ['anna'] } },
    ]);
    const name = { param: 'name', type: 'string', modifier: undefined, missing: undefined, values: ['x'] };
    // Patient.general-practitioner can refer to Practitioner, Organization or PractitionerRole; PractitionerRole has no name.
    expect(clauses({ 'general-practitioner.name': 'x' })).toEqual([
      { untyped: 'general-practitioner', chains: [{ chain: 'general-practitioner', target: 'Practitioner', inner: name }, { chain: 'general-practitioner', target: 'Organization', inner: name }] },
    ]);
    // Only one target defines it: a plain typed chain.
    expect(clauses({ 'general-practitioner.role': 'x' })).toEqual([
      { chain: 'general-practitioner', target: 'PractitionerRole', inner: { param: 'role', type: 'token', modifier: undefined, missing: undefined, values: ['x'] } },
    ]);
    // Nested: Observation.subject -> (Device | Patient | Location).organization (a reference on each) -> Organization.name.
    expect(clauses({ 'subject.organization.name': 'x' }, 'Observation')).toEqual([
      {
        untyped: 'subject',
        chains: ['Device', 'Patient', 'Location'].map((target) => ({ chain: 'subject', target, inner: { chain: 'organization', target: 'Organization', inner: name } })),
      },
    ]);
    // Provenance.target may refer to any type: `target.name` alone is dozens of typed chains, nested it is too many.
    expect((clauses({ 'target.name': 'x' }, 'Provenance')[0] as { chains: unknown[] }).chains.length).toBeLessThanOrEqual(50);
    const [status, code, diagnostics] = refusal(() => parse({ 'target.subject.name': 'x' }, ['Provenance']));
    expect([status, code]).toEqual([400, 'too-costly']);
    expect(diagnostics).toMatch(/^target\.subject\.name: the chain without a type modifier expands to \d+ typed chains \(at most 50\); name the type \(target:Type\.subject\.name\)$/);
    expect(refusal(() => parse({ 'general-practitioner.colour': 'x' }))).toEqual([
      400,
      'invalid',
      "Unknown search parameter 'colour' in chain: none of the types general-practitioner can refer to (Practitioner, Organization, PractitionerRole) defines it",
      ['general-practitioner.colour'],
    ]);
    expect(refusal(() => parse({ 'subject:Organization.name': 'x' }, ['Observation']))).toEqual([400, 'invalid', 'subject cannot refer to Organization', ['subject:Organization.name']]);
    expect(refusal(() => parse({ 'subject:Organization': 'x' }, ['Observation']))).toEqual([400, 'invalid', 'subject cannot refer to Organization', ['subject:Organization']]);
    expect(refusal(() => parse({ 'gender.name': 'x' }))).toEqual([400, 'invalid', "Chained parameter 'gender' is not a reference parameter of Patient", ['gender.name']]);
    expect(refusal(() => parse({ 'subject:Patient.colour': 'x' }, ['Observation']))).toEqual([
      400,
      'invalid',
      "Unknown search parameter 'colour' on Patient in chain",
      ['subject:Patient.colour'],
    ]);
  });

  it('_has names a source type, its reference parameter and a parameter of the source', () => {
    expect(clauses({ '_has:Observation:subject:code': '1234' })).toEqual([
      { has: 'Observation', via: 'subject', inner: { param: 'code', type: 'token', modifier: undefined, missing: undefined, values: ['1234'] } },
    ]);
    expect(refusal(() => parse({ '_has:Observation:subject': 'x' }))).toEqual([400, 'invalid', '_has must be _has:Type:reference-param:search-param', ['_has:Observation:subject']]);
    expect(refusal(() => parse({ '_has:Spaceship:subject:code': 'x' }))).toEqual([400, 'invalid', 'Unknown resource type Spaceship in _has', ['_has:Spaceship:subject:code']]);
    expect(refusal(() => parse({ '_has:Observation:code:code': 'x' }))).toEqual([400, 'invalid', 'code is not a reference parameter of Observation', ['_has:Observation:code:code']]);
    expect(refusal(() => parse({ '_has:Observation:subject:colour': 'x' }))).toEqual([
      400,
      'invalid',
      "Unknown search parameter 'colour' on Observation in _has",
      ['_has:Observation:subject:colour'],
    ]);
  });

  it('unknown parameters: strict refuses with not-supported, lenient reports each once', () => {
    expect(refusal(() => parse({ colour: 'blue' }))).toEqual([400, 'not-supported', "Unknown or unsupported search parameter 'colour' for Patient", ['colour']]);
    const lenient = parse({ colour: ['blue', 'red'], size: 'x', gender: 'male' }, ['Patient'], { strict: false });
    expect(lenient.ignored).toEqual(['colour', 'size']);
    expect(lenient.clauses.get('Patient')).toHaveLength(1);
  });

  it('result parameters are not clauses', () => {
    const ast = parse({ _count: '5', _sort: 'name', _total: 'none', _summary: 'true', _elements: 'name', _format: 'json', _pretty: 'true', _type: 'Patient' });
    expect(ast.clauses.get('Patient')).toEqual([]);
    expect(ast.ignored).toEqual([]);
  });

  it('modifiers: each type has its own; :above/:below on uri and token (system|code) only', () => {
    expect(refusal(() => parse({ 'name:not': 'x' }))).toEqual([400, 'invalid', 'Unknown modifier :not on name', ['name:not']]);
    expect(refusal(() => parse({ 'birthdate:below': '2020' }))).toEqual([400, 'not-supported', 'Modifier :below is not supported for date parameter birthdate', undefined]);
    expect(refusal(() => parse({ 'gender:above': 'x' }))).toEqual([400, 'invalid', "gender:above: 'x' must be system|code (the code system says what is above or below the code)", ['gender:above']]);
    expect(refusal(() => parse({ 'gender:below': 'http://x|' }))).toEqual([400, 'invalid', "gender:below: 'http://x|' must be system|code (the code system says what is above or below the code)", ['gender:below']]);
    expect((parse({ 'gender:below': 'http://x|a\\|b' }).clauses.get('Patient')![0] as ParamClause).values).toEqual(['http://x|a\\|b']);
    expect(refusal(() => parse({ '_text:contains': 'x' }))).toEqual([400, 'invalid', 'Unknown modifier :contains on _text', ['_text:contains']]);
    expect(refusal(() => parse({ _sort: '_text' }))).toEqual([400, 'invalid', 'Cannot sort by _text: full-text matches are not ranked', ['_sort']]);
    expect(refusal(() => parse({ 'gender:missing': 'yes' }))).toEqual([400, 'invalid', 'gender:missing must be true or false', ['gender:missing']]);
    for (const [name, value] of [['gender:not', 'male'], ['gender:text', 'm'], ['name:exact', 'A'], ['name:contains', 'n'], ['general-practitioner:identifier', 'a|b']] as const) {
      expect((parse({ [name]: value }).clauses.get('Patient')![0] as ParamClause).modifier).toBe(name.split(':')[1]);
    }
    expect((parse({ 'url:below': 'http://x' }, ['ValueSet']).clauses.get('ValueSet')![0] as ParamClause).modifier).toBe('below');
  });

  it('refuses empty values and NUL characters, naming the parameter', () => {
    expect(refusal(() => parse({ gender: '' }))).toEqual([400, 'invalid', 'Empty value for search parameter gender', ['gender']]);
    expect(refusal(() => parse({ gender: 'male,' }))).toEqual([400, 'invalid', 'Empty value for search parameter gender', ['gender']]);
    expect(refusal(() => parse({ gender: 'ma\0le' }))).toEqual([400, 'invalid', 'Search parameter gender contains a NUL character', ['gender']]);
    expect(refusal(() => parse({ 'gen\0der': 'male' }))).toEqual([400, 'invalid', 'Search parameter gen\\0der contains a NUL character', ['gen\\0der']]);
  });

  it.each([
    ['date', { birthdate: '2020-02-30' }, "birthdate: '2020-02-30' is not a valid date (prefix eq)"],
    ['date with prefix', { birthdate: 'ge20x' }, "birthdate: 'ge20x' is not a valid date (prefix ge)"],
    ['id', { _id: 'a b' }, "_id: 'a b' is not a valid id"],
    ['id too long', { _id: 'x'.repeat(65) }, `_id: '${'x'.repeat(65)}' is not a valid id`],
    ['of-type', { 'identifier:of-type': 'a|b' }, 'identifier:of-type needs system|code|value'],
    ['ValueSet url', { 'language:in': 'a b' }, "language:in: 'a b' is not a ValueSet canonical URL"],
    ['ValueSet url with two versions', { 'language:in': 'http://x|1|2' }, "language:in: 'http://x|1|2' is not a ValueSet canonical URL"],
  ])('refuses a malformed %s value before any SQL', (_name, query, diagnostics) => {
    const [name] = Object.keys(query);
    expect(refusal(() => parse(query as QueryParams))).toEqual([400, 'invalid', diagnostics, [name]]);
  });

  it.each([
    ['1', true],
    ['-1.5', true],
    ['+2', true],
    ['1e3', true],
    ['1.5E-2', true],
    ['gt1', true],
    ['1.', false],
    ['.5', false],
    ['1e', false],
    ['one', false],
    ['1|urn:x', false],
  ])('number %s valid: %s', (value, valid) => {
    const run = () => parse({ probability: value }, ['RiskAssessment']);
    if (valid) expect(run().clauses.get('RiskAssessment')).toHaveLength(1);
    else expect(refusal(run)).toEqual([400, 'invalid', `probability: '${value}' is not a valid number`, ['probability']]);
  });

  it.each([
    ['5.4', true],
    ['5.4|http://unitsofmeasure.org|mg', true],
    ['5.4||mg', true],
    ['lt5.4|s|c', true],
    ['5.4|s|c|d', false],
    ['|s|c', false],
  ])('quantity %s valid: %s', (value, valid) => {
    const run = () => parse({ 'value-quantity': value }, ['Observation']);
    if (valid) expect(run().clauses.get('Observation')).toHaveLength(1);
    else expect(refusal(run)).toEqual([400, 'invalid', `value-quantity: '${value}' is not a valid quantity`, ['value-quantity']]);
  });

  it('composites: one valid value per component, joined with $', () => {
    expect(clauses({ 'code-value-quantity': '1234$gt5' }, 'Observation')).toHaveLength(1);
    expect(refusal(() => parse({ 'code-value-quantity': '1234$5$6' }, ['Observation']))).toEqual([
      400,
      'invalid',
      "code-value-quantity: '1234$5$6' must have 2 parts separated by $ (token$quantity)",
      ['code-value-quantity'],
    ]);
    expect(refusal(() => parse({ 'code-value-quantity': '1234$' }, ['Observation']))[2]).toBe("code-value-quantity: '1234$' must have 2 parts separated by $ (token$quantity)");
    expect(refusal(() => parse({ 'code-value-date': '1234$2020-13' }, ['Observation']))[2]).toBe("code-value-date: '2020-13' is not a valid date (prefix eq)");
  });
});

describe('search request parser: limits', () => {
  it(`at most ${SEARCH_LIMITS.clauses} clauses per type`, () => {
    const ok: QueryParams = { gender: Array.from({ length: SEARCH_LIMITS.clauses }, () => 'male') };
    expect(parse(ok).clauses.get('Patient')).toHaveLength(SEARCH_LIMITS.clauses);
    const over: QueryParams = { gender: Array.from({ length: SEARCH_LIMITS.clauses + 1 }, () => 'male') };
    expect(refusal(() => parse(over))).toEqual([400, 'too-costly', 'The search has more than 20 clauses: at most 20 search parameter clauses per request', ['gender']]);
  });

  it(`at most ${SEARCH_LIMITS.orValues} OR values`, () => {
    expect(clauses({ gender: Array.from({ length: SEARCH_LIMITS.orValues }, () => 'x').join(',') })).toHaveLength(1);
    const over = Array.from({ length: SEARCH_LIMITS.orValues + 1 }, () => 'x').join(',');
    expect(refusal(() => parse({ gender: over }))).toEqual([400, 'too-costly', 'gender has 101 values: at most 100 OR values per parameter', ['gender']]);
  });

  it(`at most ${SEARCH_LIMITS.chainDepth} chained links and ${SEARCH_LIMITS.hasDepth} nested _has`, () => {
    expect(clauses({ 'subject:Patient.organization.partof.name': 'x' }, 'Observation')).toHaveLength(1);
    expect(refusal(() => parse({ 'subject:Patient.organization.partof.partof.name': 'x' }, ['Observation']))).toEqual([
      400,
      'too-costly',
      'subject:Patient.organization.partof.partof.name: at most 3 chained references',
      ['subject:Patient.organization.partof.partof.name'],
    ]);
    expect(clauses({ '_has:Observation:subject:_has:Observation:has-member:_id': 'x' })).toHaveLength(1);
    const deep = '_has:Observation:subject:_has:Observation:has-member:_has:Observation:has-member:_id';
    expect(refusal(() => parse({ [deep]: 'x' }))).toEqual([400, 'too-costly', `${deep}: at most 2 nested _has`, [deep]]);
  });

  it(`at most ${SEARCH_LIMITS.includes} includes, named by the kind that went over`, () => {
    const inc = (n: number) => Array.from({ length: n }, () => 'Observation:subject');
    expect(parse({ _include: inc(10) }, ['Observation']).include).toHaveLength(10);
    expect(refusal(() => parse({ _include: inc(11) }, ['Observation']))).toEqual([
      400,
      'too-costly',
      '11 includes: at most 10 _include and _revinclude parameters per request',
      ['_include'],
    ]);
    expect(refusal(() => parse({ _include: inc(5), _revinclude: inc(6) }, ['Observation']))[3]).toEqual(['_revinclude']);
    expect(refusal(() => parse({ _include: inc(11), _revinclude: inc(1) }, ['Observation']))[3]).toEqual(['_include']);
  });

  it(`at most ${SEARCH_LIMITS.sortKeys} sort keys`, () => {
    expect(parse({ _sort: 'name,-birthdate,gender,_id,_lastUpdated' }).sort).toHaveLength(5);
    expect(refusal(() => parse({ _sort: 'name,-birthdate,gender,_id,_lastUpdated,family' }))).toEqual([
      400,
      'too-costly',
      '_sort has 6 keys: at most 5 sort keys',
      ['_sort'],
    ]);
  });
});

describe('search request parser: result parameters', () => {
  it('defaults: 20 per page, no total, nothing included', () => {
    const ast = parse({});
    expect({ ...ast, clauses: [...ast.clauses] }).toEqual({
      resourceTypes: ['Patient'],
      clauses: [['Patient', []]],
      sort: [],
      count: 20,
      cursor: undefined,
      total: 'none',
      include: [],
      revinclude: [],
      summary: undefined,
      elements: undefined,
      compartment: undefined,
      ignored: [],
    });
  });

  it(`_count: a non-negative integer, capped at ${MAX_COUNT}; the last occurrence wins`, () => {
    expect(parse({ _count: '0' }).count).toBe(0);
    expect(parse({ _count: '1000' }).count).toBe(1000);
    expect(parse({ _count: '1001' }).count).toBe(MAX_COUNT);
    expect(parse({ _count: ['5', '7'] }).count).toBe(7);
    for (const bad of ['-1', '1.5', 'ten', '', '12345678']) {
      expect(refusal(() => parse({ _count: bad }))).toEqual([400, 'invalid', `_count must be a non-negative integer, got '${bad}'`, ['_count']]);
    }
  });

  it('_total: none, estimate or accurate; _summary=count makes it accurate', () => {
    expect(parse({ _total: 'estimate' }).total).toBe('estimate');
    expect(parse({ _total: 'accurate' }).total).toBe('accurate');
    expect(parse({ _summary: 'count' }).total).toBe('accurate');
    expect(parse({ _summary: 'count', _total: 'none' }).total).toBe('accurate');
    expect(parse({ _summary: 'data', _total: 'estimate' })).toEqual(expect.objectContaining({ summary: 'data', total: 'estimate' }));
    expect(refusal(() => parse({ _total: 'some' }))).toEqual([400, 'invalid', '_total must be none, estimate or accurate', ['_total']]);
  });

  it('_sort: keys in order, - for descending, unknown and composite refused', () => {
    expect(parse({ _sort: '-birthdate,name,_id' }).sort.map((k) => [k.def.code, k.descending])).toEqual([
      ['birthdate', true],
      ['name', false],
      ['_id', false],
    ]);
    expect(refusal(() => parse({ _sort: 'colour' }))).toEqual([400, 'invalid', "Cannot sort by unknown parameter 'colour'", ['_sort']]);
    expect(refusal(() => parse({ _sort: 'code-value-quantity' }, ['Observation']))).toEqual([
      400,
      'invalid',
      "Cannot sort by composite parameter 'code-value-quantity'",
      ['_sort'],
    ]);
    // A system search sorts by a parameter any of its types has.
    expect(parse({ _sort: 'code' }, ['Patient', 'Observation']).sort[0].def.code).toBe('code');
  });

  it('_include and _revinclude: Type:param[:Target], :iterate', () => {
    const ast = parse(
      { _include: ['Observation:subject', 'Observation:subject:Patient', 'Observation:*'], '_include:iterate': 'Patient:link', _revinclude: 'Provenance:target' },
      ['Observation'],
    );
    expect(ast.include).toEqual([
      { sourceType: 'Observation', param: 'subject', targetType: undefined, iterate: false },
      { sourceType: 'Observation', param: 'subject', targetType: 'Patient', iterate: false },
      { sourceType: 'Observation', param: '*', targetType: undefined, iterate: false },
      { sourceType: 'Patient', param: 'link', targetType: undefined, iterate: true },
    ]);
    expect(ast.revinclude).toEqual([{ sourceType: 'Provenance', param: 'target', targetType: undefined, iterate: false }]);
    expect(refusal(() => parse({ _include: 'Observation' }))).toEqual([400, 'invalid', "_include must be SourceType:param[:TargetType], got 'Observation'", ['_include']]);
    expect(refusal(() => parse({ _include: 'Observation:subject:Patient:x' }))).toEqual([
      400,
      'invalid',
      "_include must be SourceType:param[:TargetType], got 'Observation:subject:Patient:x'",
      ['_include'],
    ]);
    expect(refusal(() => parse({ _revinclude: 'Spaceship:subject' }))).toEqual([400, 'invalid', "_revinclude must be SourceType:param[:TargetType], got 'Spaceship:subject'", ['_revinclude']]);
    expect(refusal(() => parse({ _include: 'Observation:code' }))).toEqual([400, 'invalid', '_include: code is not a reference parameter of Observation', ['_include']]);
    expect(refusal(() => parse({ _include: 'Observation:subject:Spaceship' }))).toEqual([400, 'invalid', '_include: unknown type Spaceship', ['_include']]);
  });

  it('_cursor: only a cursor this server issued', () => {
    const next = encodeCursor('next', ['2020-01-01', null], 'p1');
    expect(parse({ _cursor: next }).cursor).toEqual({ direction: 'next', values: ['2020-01-01', null], id: 'p1' });
    expect(parse({ _cursor: encodeCursor('prev', [], 'p2') }).cursor).toEqual({ direction: 'prev', values: [], id: 'p2' });
    const forged = [
      'not-base64-json',
      Buffer.from(JSON.stringify({ d: 'x', v: [], i: 'p1' })).toString('base64url'),
      Buffer.from(JSON.stringify({ d: 'n', v: 'x', i: 'p1' })).toString('base64url'),
      Buffer.from(JSON.stringify({ d: 'n', v: [], i: 1 })).toString('base64url'),
    ];
    for (const raw of forged) expect(refusal(() => parse({ _cursor: raw }))).toEqual([400, 'invalid', '_cursor is not a cursor this server issued', ['_cursor']]);
  });

  it('a system search keeps one clause list per type', () => {
    const ast = parse({ _id: 'a' }, ['Patient', 'Observation']);
    expect([...ast.clauses.keys()]).toEqual(['Patient', 'Observation']);
    expect(ast.clauses.get('Observation')!.map(summarize)).toEqual([{ param: '_id', type: 'token', modifier: undefined, missing: undefined, values: ['a'] }]);
  });
});

describe('search value syntax', () => {
  it.each([
    ['a', ['a']],
    ['a,b', ['a', 'b']],
    ['a\\,b', ['a\\,b']],
    ['a\\|b,c\\$d', ['a\\|b', 'c\\$d']],
    ['a\\\\,b', ['a\\\\', 'b']],
    ['a\\x,b', ['a\\x', 'b']],
    ['a\\', ['a\\']],
    [',', ['', '']],
    ['', ['']],
  ])('splitValues(%j) = %j', (value, parts) => {
    expect(splitValues(value)).toEqual(parts);
  });

  it.each([
    ['gt5', ['gt', '5']],
    ['le-5', ['le', '-5']],
    ['ap+5', ['ap', '+5']],
    ['eb.5', ['eb', '.5']],
    ['5', ['eq', '5']],
    ['gt', ['eq', 'gt']],
    ['gtx', ['eq', 'gtx']],
    ['xx5', ['eq', 'xx5']],
    ['ne2020', ['ne', '2020']],
    ['sa2020', ['sa', '2020']],
    ['eq2020', ['eq', '2020']],
  ])('splitPrefix(%j) = %j', (value, parts) => {
    expect(splitPrefix(value)).toEqual(parts);
  });
});

describe('search request parser: edges the mutation run found unpinned', () => {
  it('a NUL in any one of several values is refused', () => {
    expect(refusal(() => parse({ gender: ['male', 'fe\0male'] }))).toEqual([400, 'invalid', 'Search parameter gender contains a NUL character', ['gender']]);
  });

  it('_elements is read from its own parameter', () => {
    expect(parse({ _elements: 'name,Patient.gender' }).elements).toEqual(['name', 'gender']);
  });

  it('a full-text parameter without a modifier, a valid date and a many-digit number are accepted', () => {
    expect(clauses({ _text: 'fever' })).toEqual([{ param: '_text', type: 'string', modifier: undefined, missing: undefined, values: ['fever'] }]);
    expect(clauses({ birthdate: 'ge2020-01-31' })).toEqual([{ param: 'birthdate', type: 'date', modifier: undefined, missing: undefined, values: ['ge2020-01-31'] }]);
    expect(parse({ probability: '12.25e10' }, ['RiskAssessment']).clauses.get('RiskAssessment')).toHaveLength(1);
  });

  it('a resource type as modifier of a non-reference parameter is an unknown modifier', () => {
    expect(refusal(() => parse({ 'name:Patient': 'x' }))).toEqual([400, 'invalid', 'Unknown modifier :Patient on name', ['name:Patient']]);
  });

  it('_has refuses a name with a line break after the inner parameter', () => {
    const name = '_has:Observation:subject:code\nx';
    expect(refusal(() => parse({ [name]: 'x' }))).toEqual([400, 'invalid', '_has must be _has:Type:reference-param:search-param', [name]]);
  });

  it('_include of a parameter the source type does not have is refused', () => {
    expect(refusal(() => parse({ _include: 'Observation:colour' }))).toEqual([400, 'invalid', '_include: colour is not a reference parameter of Observation', ['_include']]);
  });

  it('token :above/:below take one system and one code; an escaped | is not a separator', () => {
    for (const bad of ['a|b|c', 'http://x|\\|']) {
      expect(refusal(() => parse({ 'gender:below': bad }))[2]).toBe(`gender:below: '${bad}' must be system|code (the code system says what is above or below the code)`);
    }
  });

  it('a parameter whose value is undefined is skipped', () => {
    expect(parse({ gender: undefined, name: 'x' }).clauses.get('Patient')!.map(summarize)).toEqual([
      { param: 'name', type: 'string', modifier: undefined, missing: undefined, values: ['x'] },
    ]);
  });

  it('the NUL diagnostic shows every NUL as \\0 and at most 100 characters of the name', () => {
    expect(refusal(() => parse({ 'a\0b\0c': 'x' }))).toEqual([400, 'invalid', 'Search parameter a\\0b\\0c contains a NUL character', ['a\\0b\\0c']]);
    const long = `${'n'.repeat(150)}\0`;
    expect(refusal(() => parse({ [long]: 'x' }))[3]).toEqual(['n'.repeat(100)]);
  });

  it('a name starting with a dot or a colon is an unknown parameter, not a chain or a modifier', () => {
    expect(refusal(() => parse({ '.name': 'x' }))).toEqual([400, 'not-supported', "Unknown or unsupported search parameter '.name' for Patient", ['.name']]);
    expect(refusal(() => parse({ ':name': 'x' }))).toEqual([400, 'not-supported', "Unknown or unsupported search parameter ':name' for Patient", [':name']]);
  });

  it('every type accepts :missing; full-text parameters accept it and no other modifier', () => {
    const cases: [string, string][] = [
      ['name:missing', 'Patient'],
      ['birthdate:missing', 'Patient'],
      ['general-practitioner:missing', 'Patient'],
      ['_text:missing', 'Patient'],
      ['probability:missing', 'RiskAssessment'],
      ['value-quantity:missing', 'Observation'],
      ['code-value-quantity:missing', 'Observation'],
      ['url:missing', 'ValueSet'],
    ];
    for (const [name, type] of cases) {
      expect(parse({ [name]: 'true' }, [type]).clauses.get(type)!.map(summarize)).toEqual([
        expect.objectContaining({ param: name.split(':')[0], modifier: 'missing', missing: true, values: [] }),
      ]);
    }
  });

  it(':above on uri and token :not-in are accepted; :above on a date is not supported', () => {
    expect((parse({ 'url:above': 'http://x' }, ['ValueSet']).clauses.get('ValueSet')![0] as ParamClause).modifier).toBe('above');
    expect((parse({ 'language:not-in': 'http://x|1' }).clauses.get('Patient')![0] as ParamClause).values).toEqual(['http://x|1']);
    expect(refusal(() => parse({ 'birthdate:above': '2020' }))).toEqual([400, 'not-supported', 'Modifier :above is not supported for date parameter birthdate', undefined]);
  });

  it('ids: letters of either case, digits, - and ., 1 to 64 of them', () => {
    for (const id of ['Ab-9.z', 'Z', 'q', '7', '-', '.', 'x'.repeat(64)]) {
      expect((parse({ _id: id }).clauses.get('Patient')![0] as ParamClause).values).toEqual([id]);
    }
    for (const id of ['a_b', 'a/b', 'é']) expect(refusal(() => parse({ _id: id }))[2]).toBe(`_id: '${id}' is not a valid id`);
  });

  it(':of-type takes exactly system|code|value; :in a URL with at most one version', () => {
    expect((parse({ 'identifier:of-type': 'a|b|c' }).clauses.get('Patient')![0] as ParamClause).values).toEqual(['a|b|c']);
    expect(refusal(() => parse({ 'identifier:of-type': 'a|b|c|d' }))[2]).toBe('identifier:of-type needs system|code|value');
    for (const ok of ['http://x', 'http://x|1.0']) expect((parse({ 'language:in': ok }).clauses.get('Patient')![0] as ParamClause).values).toEqual([ok]);
    for (const bad of [' http://x', 'http://x ', '|1', 'http://x|', 'http://x|1 ', 'http://x| 1']) {
      expect(refusal(() => parse({ 'language:in': bad }))[2]).toBe(`language:in: '${bad}' is not a ValueSet canonical URL`);
    }
    expect(refusal(() => parse({ 'language:not-in': 'a b' }))).toEqual([400, 'invalid', "language:not-in: 'a b' is not a ValueSet canonical URL", ['language:not-in']]);
  });

  it('a chain whose head is unknown, or whose middle link is not a reference on any target, is refused', () => {
    expect(refusal(() => parse({ 'colour.name': 'x' }))).toEqual([400, 'invalid', "Chained parameter 'colour' is not a reference parameter of Patient", ['colour.name']]);
    expect(refusal(() => parse({ 'general-practitioner.name.family': 'x' }))).toEqual([
      400,
      'invalid',
      "Unknown search parameter 'name.family' in chain: none of the types general-practitioner can refer to (Practitioner, Organization, PractitionerRole) defines it",
      ['general-practitioner.name.family'],
    ]);
  });

  it('an untyped chain may continue with _has on every target', () => {
    const [clause] = parse({ 'subject._has:Observation:subject:code': 'x' }, ['Observation']).clauses.get('Observation')!;
    expect(clause.kind).toBe('untyped-chain');
    if (clause.kind !== 'untyped-chain') return;
    expect(clause.chains.map((c) => [c.targetType, c.inner.kind])).toEqual([
      ['Group', 'has'],
      ['Device', 'has'],
      ['Patient', 'has'],
      ['Location', 'has'],
    ]);
  });

  it('the include limit names _revinclude when _include alone is within it', () => {
    const inc = (n: number) => Array.from({ length: n }, () => 'Observation:subject');
    expect(refusal(() => parse({ _include: inc(10), _revinclude: inc(1) }, ['Observation']))).toEqual([
      400,
      'too-costly',
      '11 includes: at most 10 _include and _revinclude parameters per request',
      ['_revinclude'],
    ]);
  });

  it('_revinclude:iterate is read and marked iterate; an empty _sort sorts by nothing', () => {
    expect(parse({ '_revinclude:iterate': 'Observation:subject' }).revinclude).toEqual([{ sourceType: 'Observation', param: 'subject', targetType: undefined, iterate: true }]);
    expect(parse({ _sort: '' }).sort).toEqual([]);
  });
});
