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
});
