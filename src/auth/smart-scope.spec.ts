import { grantScopes, parseSmartScope, scopeAllows } from './smart-scope';

describe('SMART scopes', () => {
  it('parses v2 and v1 forms', () => {
    expect([...parseSmartScope('system/Patient.rs')!.verbs]).toEqual(['r', 's']);
    expect([...parseSmartScope('system/*.cruds')!.verbs]).toEqual(['c', 'r', 'u', 'd', 's']);
    expect([...parseSmartScope('system/Patient.read')!.verbs]).toEqual(['r', 's']);
    expect([...parseSmartScope('system/Patient.write')!.verbs]).toEqual(['c', 'u', 'd']);
    expect([...parseSmartScope('system/*.*')!.verbs]).toEqual(['c', 'r', 'u', 'd', 's']);
    expect(parseSmartScope('system/Observation.rs?category=laboratory')!.restrictions).toEqual([['category', 'laboratory']]);
    expect(parseSmartScope('patient/Patient.rs')).toBeUndefined();
    expect(parseSmartScope('system/Patient.sr')).toBeUndefined();
    expect(parseSmartScope('openid')).toBeUndefined();
  });

  it('parses each scope text once: the same frozen result for every request that holds it', () => {
    const first = parseSmartScope('system/Observation.rs?category=vital-signs')!;
    const again = parseSmartScope(['system', 'Observation.rs?category=vital-signs'].join('/'))!;
    expect(again).toBe(first);
    expect(Object.isFrozen(first)).toBe(true);
    expect(Object.isFrozen(first.restrictions)).toBe(true);
    expect(() => (first.restrictions as [string, string][]).push(['code', 'x'])).toThrow(TypeError);
    expect(first.restrictions).toEqual([['category', 'vital-signs']]);
    // A text that is no scope is remembered as none, and stays none.
    expect(parseSmartScope('system/Patient.sr')).toBeUndefined();
    expect(parseSmartScope('system/Patient.sr')).toBeUndefined();
    // A granted overlap builds its own restrictions; the shared ones are unchanged by it.
    expect(grantScopes(['system/Observation.rs?category=vital-signs'], ['system/Observation.r?code=x'])).toEqual(['system/Observation.r?category=vital-signs&code=x']);
    expect(first.restrictions).toEqual([['category', 'vital-signs']]);
  });

  it('checks type and verb', () => {
    const s = parseSmartScope('system/Patient.rs')!;
    expect(scopeAllows(s, 'Patient', 'r')).toBe(true);
    expect(scopeAllows(s, 'Patient', 'c')).toBe(false);
    expect(scopeAllows(s, 'Observation', 'r')).toBe(false);
    expect(scopeAllows(parseSmartScope('system/*.rs')!, undefined, 's')).toBe(true);
  });

  it('grants the requested scopes that the registered ones cover', () => {
    expect(grantScopes(['system/Patient.rs', 'system/Observation.c', 'system/Condition.read'], ['system/Patient.cruds', 'system/Condition.*'])).toEqual([
      'system/Patient.rs',
      'system/Condition.read',
    ]);
    expect(grantScopes(['system/Observation.rs?category=laboratory'], ['system/Observation.rs?category=laboratory'])).toEqual([
      'system/Observation.rs?category=laboratory',
    ]);
    expect(grantScopes(['system/Observation.rs'], ['system/Observation.rs?category=laboratory'])).toEqual([
      'system/Observation.rs?category=laboratory',
    ]);
    expect(grantScopes(['system/Condition.rs'], ['system/Patient.cruds'])).toEqual([]);
  });

  it('grants the overlap when a request is wider than the registration', () => {
    expect(grantScopes(['system/*.rs'], ['system/Patient.cruds', 'system/Observation.rs?category=laboratory'])).toEqual([
      'system/Patient.rs',
      'system/Observation.rs?category=laboratory',
    ]);
    expect(grantScopes(['system/*.*'], ['system/Organization.cruds'])).toEqual(['system/Organization.cruds']);
    expect(grantScopes(['system/Patient.cruds'], ['system/*.rs'])).toEqual(['system/Patient.rs']);
    expect(grantScopes(['system/Patient.c'], ['system/*.rs'])).toEqual([]);
  });

  it('rejects a restriction on the wildcard type (there is no type to search)', () => {
    expect(parseSmartScope('system/*.rs?category=laboratory')).toBeUndefined();
  });

  it('accepts v2 verbs in c-r-u-d-s order with any of them left out', () => {
    expect([...parseSmartScope('system/Patient.cud')!.verbs]).toEqual(['c', 'u', 'd']);
    expect([...parseSmartScope('system/Patient.r')!.verbs]).toEqual(['r']);
    expect(parseSmartScope('system/Patient.rr')).toBeUndefined();
  });

  it('matches the whole scope string, not a part of it', () => {
    expect(parseSmartScope('user/system/Patient.rs')).toBeUndefined();
    expect(parseSmartScope('system/Patient.rsx')).toBeUndefined();
    expect(parseSmartScope('system/Patient.readx')).toBeUndefined();
  });

  it('grants nothing for, and is not thrown by, scopes it cannot parse on either side', () => {
    expect(grantScopes(['openid', 'system/Patient.rs'], ['system/Patient.cruds'])).toEqual(['system/Patient.rs']);
    expect(grantScopes(['system/Patient.rs'], ['launch', 'system/Patient.rs'])).toEqual(['system/Patient.rs']);
  });

  it('grants a covered request as asked, in its own (v1) form', () => {
    // Covered by a wildcard registration: granted verbatim, not rewritten to the v2 overlap `system/Patient.rs`.
    expect(grantScopes(['system/Patient.read'], ['system/*.rs'])).toEqual(['system/Patient.read']);
    // Covered by a registration with the same restriction.
    expect(grantScopes(['system/Observation.read?category=laboratory'], ['system/Observation.rs?category=laboratory'])).toEqual([
      'system/Observation.read?category=laboratory',
    ]);
  });

  it('an overlap keeps the restrictions of both sides, each once', () => {
    // Not covered (the registration lacks c, u, d): the overlap keeps the request's restriction.
    expect(grantScopes(['system/Observation.rs?category=laboratory'], ['system/Observation.r'])).toEqual([
      'system/Observation.r?category=laboratory',
    ]);
    // The same restriction on both sides appears once.
    expect(grantScopes(['system/Observation.cruds?category=laboratory'], ['system/Observation.rs?category=laboratory'])).toEqual([
      'system/Observation.rs?category=laboratory',
    ]);
    // Same key, other value: a different restriction, so not covered, and both are AND-ed.
    expect(grantScopes(['system/Observation.read?category=vital-signs'], ['system/Observation.rs?category=laboratory'])).toEqual([
      'system/Observation.rs?category=vital-signs&category=laboratory',
    ]);
    // Other key, same value: also a different restriction.
    expect(grantScopes(['system/Observation.read?code=x'], ['system/Observation.rs?category=x'])).toEqual([
      'system/Observation.rs?code=x&category=x',
    ]);
  });
});
