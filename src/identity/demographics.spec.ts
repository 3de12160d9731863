import { demographicsOf, formalName, nameWords, normalizePhone, normalizeStreet, transposedBirthDate } from './demographics';

describe('demographics', () => {
  it('folds case and accents and splits hyphenated names', () => {
    expect(nameWords('Müller-Lüdenscheidt')).toEqual(['muller', 'ludenscheidt']);
    expect(nameWords("O'Brien")).toEqual(['o', 'brien']);
    expect(nameWords('Straße')).toEqual(['strasse']);
    expect(nameWords('  José  María ')).toEqual(['jose', 'maria']);
    expect(nameWords(undefined)).toEqual([]);
  });

  it('replaces nicknames by their formal name from the shipped table', () => {
    expect(formalName('bill')).toBe('william');
    expect(formalName('william')).toBe('william');
    expect(formalName('peggy')).toBe('margaret');
    expect(formalName('_comment')).toBe('_comment');
  });

  it('keeps the last ten digits of a phone and refuses short ones', () => {
    expect(normalizePhone('+1 (555) 010-2000')).toBe('5550102000');
    expect(normalizePhone('555.010.2000')).toBe('5550102000');
    expect(normalizePhone('12-34')).toBeUndefined();
  });

  it('abbreviates street words', () => {
    expect(normalizeStreet('12 North Main Street, Apt. 4')).toBe('12 n main st apt 4');
    expect(normalizeStreet('Hauptstraße 5')).toBe('hauptstr 5');
    expect(normalizeStreet('...')).toBeUndefined();
  });

  it('normalizes a whole Patient', () => {
    const d = demographicsOf({
      resourceType: 'Patient',
      name: [
        { use: 'official', family: 'Smith-Jones', given: ['Bill', 'J.'] },
        { use: 'maiden', family: 'Émond' },
      ],
      gender: 'male',
      birthDate: '1980-04-01',
      address: [{ line: ['1 Elm Road'], postalCode: 'ab1 2cd' }],
      telecom: [
        { system: 'phone', value: '(555) 010-2000' },
        { system: 'email', value: ' Bill@Example.ORG ' },
        { system: 'fax', value: '555 999 0000' },
      ],
      identifier: [{ system: 'urn:ssn', value: '123' }, { value: 'no-system' }],
    });
    expect(d).toEqual({
      family: ['emond', 'jones', 'smith'],
      given: ['j', 'william'],
      birthDate: '1980-04-01',
      sex: 'male',
      postalCodes: ['AB12CD'],
      streets: ['1 elm rd'],
      phones: ['5550102000'],
      emails: ['bill@example.org'],
      identifiers: ['urn:ssn|123'],
    });
  });

  it('leaves out partial birth dates and unknown sex', () => {
    const d = demographicsOf({ resourceType: 'Patient', birthDate: '1980-04', gender: 'unknown' });
    expect(d.birthDate).toBeUndefined();
    expect(d.sex).toBeUndefined();
    expect(d.family).toEqual([]);
  });

  it('ignores values of the wrong JSON type instead of throwing (a stored or $match body may hold them)', () => {
    const odd = {
      resourceType: 'Patient',
      name: [{ family: 42, given: [null, 'Ann'] }],
      gender: 7,
      address: [{ line: [1], postalCode: {} }],
      telecom: [{ system: 'phone', value: 5550102000 }, { system: 'email', value: [] }],
      identifier: [{ system: 'urn:x', value: 1 }],
    } as unknown as Parameters<typeof demographicsOf>[0];
    expect(demographicsOf(odd)).toEqual({ family: [], given: ['anna'], birthDate: undefined, sex: undefined, postalCodes: [], streets: [], phones: [], emails: [], identifiers: [] });
  });

  it('transposes day and month only when the result is another real date', () => {
    expect(transposedBirthDate('1980-04-01')).toBe('1980-01-04');
    expect(transposedBirthDate('1980-04-13')).toBeUndefined();
    expect(transposedBirthDate('1980-05-05')).toBeUndefined();
    expect(transposedBirthDate(undefined)).toBeUndefined();
  });
});
