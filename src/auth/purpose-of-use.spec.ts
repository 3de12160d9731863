import { PURPOSES_BY_ROLE, PURPOSES_OF_USE, purposeAllowedForRole } from './purpose-of-use';

describe('purposes of use by role', () => {
  it('gives treatment and break-the-glass to the hospital role only', () => {
    const holders = (purpose: string) => Object.keys(PURPOSES_BY_ROLE).filter((role) => purposeAllowedForRole(role, purpose));
    expect([holders('TREAT'), holders('ETREAT')]).toEqual([['hospital'], ['hospital']]);
    expect(holders('PUBHLTH')).toEqual(['public-health']);
    expect(holders('HSYSADMIN')).toEqual(['admin']);
    expect(holders('HACCRED')).toEqual(['auditor']);
  });

  it('lists only known purposes for each role', () => {
    for (const purposes of Object.values(PURPOSES_BY_ROLE)) expect(purposes.filter((p) => !PURPOSES_OF_USE.includes(p))).toEqual([]);
  });

  it('denies unknown roles and purposes, inherited names and missing values', () => {
    expect(purposeAllowedForRole('king', 'TREAT')).toBe(false);
    expect(purposeAllowedForRole('constructor', 'TREAT')).toBe(false);
    expect(purposeAllowedForRole('hospital', 'SURGERY')).toBe(false);
    expect(purposeAllowedForRole('hospital', 'treat')).toBe(false);
    expect(purposeAllowedForRole(undefined, 'TREAT')).toBe(false);
    expect(purposeAllowedForRole('hospital', undefined)).toBe(false);
  });
});
