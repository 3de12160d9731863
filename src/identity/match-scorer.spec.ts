import type { Demographics } from './demographics';
import { demographicsOf } from './demographics';
import { editDistance, gradeOf, MAX_WEIGHT, scoreMatch, WEIGHTS } from './match-scorer';

const CONFIG = { trustedIdentifierSystems: ['urn:ssn'], thresholds: { upper: 24, lower: 14, possible: 8 } };

function person(extra: Partial<Demographics> = {}): Demographics {
  return {
    family: ['smith'],
    given: ['john'],
    birthDate: '1980-04-02',
    sex: 'male',
    postalCodes: ['12345'],
    streets: ['1 main st'],
    phones: ['5550102000'],
    emails: [],
    identifiers: [],
    ...extra,
  };
}

describe('match scorer', () => {
  it('weights are the log2 likelihood ratios of their m and u probabilities', () => {
    expect(WEIGHTS.family.agree).toBeCloseTo(Math.log2(0.9 / 0.01), 10);
    expect(WEIGHTS.family.disagree).toBeCloseTo(Math.log2(0.1 / 0.99), 10);
    expect(WEIGHTS.birthDate.agree).toBeCloseTo(13.21, 2);
    expect(MAX_WEIGHT).toBeCloseTo(6.49 + 5.49 + 13.21 + 0.97 + 8, 1);
  });

  it('the same value in a trusted identifier system is certain whatever the demographics', () => {
    const s = scoreMatch(person({ identifiers: ['urn:ssn|1'] }), person({ family: ['other'], given: ['x'], identifiers: ['urn:ssn|1'] }), CONFIG);
    expect(s).toMatchObject({ grade: 'certain', score: 1, deterministic: true });
  });

  it('an untrusted identifier system decides nothing; a trusted one with different values weighs against', () => {
    const same = scoreMatch(person({ identifiers: ['urn:mrn|1'] }), person({ identifiers: ['urn:mrn|1'] }), CONFIG);
    expect(same.deterministic).toBe(false);
    const conflict = scoreMatch(person({ identifiers: ['urn:ssn|1'] }), person({ identifiers: ['urn:ssn|2'] }), CONFIG);
    expect(conflict.fields[0]).toEqual({ field: 'identifier', level: 'disagree', weight: -12 });
    expect(conflict.weight).toBeCloseTo(same.weight - 12, 2);
  });

  it('the same person in full is certain', () => {
    const s = scoreMatch(person(), person(), CONFIG);
    expect(s.grade).toBe('certain');
    expect(s.weight).toBeCloseTo(MAX_WEIGHT, 1);
    expect(s.score).toBe(1);
  });

  it('nicknames agree through the shipped table', () => {
    const a = demographicsOf({ resourceType: 'Patient', name: [{ family: 'Smith', given: ['Bill'] }], birthDate: '1980-04-02', gender: 'male' });
    const b = demographicsOf({ resourceType: 'Patient', name: [{ family: 'SMITH', given: ['William'] }], birthDate: '1980-04-02', gender: 'male' });
    expect(scoreMatch(a, b, CONFIG).fields.find((f) => f.field === 'given')?.level).toBe('agree');
    expect(scoreMatch(a, b, CONFIG).grade).toBe('certain');
  });

  it('a typo in a name is partial, and family and given names swapped agree', () => {
    const typo = scoreMatch(person(), person({ family: ['smiht'] }), CONFIG);
    expect(typo.fields.find((f) => f.field === 'family')).toEqual({ field: 'family', level: 'partial', weight: 3 });
    const swapped = scoreMatch(person(), person({ family: ['john'], given: ['smith'] }), CONFIG);
    expect(swapped.fields.filter((f) => f.level === 'agree').map((f) => f.field)).toEqual(['family', 'given', 'birthDate', 'sex', 'contact']);
  });

  it('an initial is partial agreement with a given name', () => {
    expect(scoreMatch(person(), person({ given: ['j'] }), CONFIG).fields.find((f) => f.field === 'given')?.level).toBe('partial');
  });

  it('birth day and month transposed, and one mistyped digit, are partial agreements', () => {
    const t = scoreMatch(person(), person({ birthDate: '1980-02-04' }), CONFIG);
    expect(t.fields.find((f) => f.field === 'birthDate')).toEqual({ field: 'birthDate', level: 'transposed', weight: WEIGHTS.birthDate.transposed });
    expect(t.grade).toBe('certain');
    expect(scoreMatch(person(), person({ birthDate: '1980-04-03' }), CONFIG).fields.find((f) => f.field === 'birthDate')?.level).toBe('partial');
    expect(scoreMatch(person(), person({ birthDate: '1950-09-12' }), CONFIG).fields.find((f) => f.field === 'birthDate')?.level).toBe('disagree');
  });

  it('twins (same household and birth date, other given name) are not certain', () => {
    const s = scoreMatch(person(), person({ given: ['michael'] }), CONFIG);
    expect(s.grade).not.toBe('certain');
    expect(s.weight).toBeLessThan(CONFIG.thresholds.upper);
  });

  it('a parent and child of the same name and household are not certain', () => {
    const s = scoreMatch(person(), person({ birthDate: '2008-11-23' }), CONFIG);
    expect(s.grade).not.toBe('certain');
  });

  it('household fields together count at most the contact cap', () => {
    const s = scoreMatch(person({ emails: ['a@b.c'] }), person({ emails: ['a@b.c'] }), CONFIG);
    expect(s.fields.find((f) => f.field === 'contact')).toEqual({ field: 'contact', level: 'agree', weight: 8 });
  });

  it('missing fields weigh nothing; strangers are certainly-not', () => {
    const empty: Demographics = { family: [], given: [], postalCodes: [], streets: [], phones: [], emails: [], identifiers: [] };
    expect(scoreMatch(empty, person(), CONFIG)).toMatchObject({ weight: 0, grade: 'certainly-not' });
    const stranger = scoreMatch(person(), person({ family: ['jones'], given: ['mary'], birthDate: '1990-12-30', sex: 'female', postalCodes: ['99999'], streets: ['9 elm rd'], phones: ['5559999999'] }), CONFIG);
    expect(stranger.grade).toBe('certainly-not');
    expect(stranger.score).toBe(0);
  });

  it('grades by the thresholds, inclusive at each', () => {
    expect(gradeOf(24, CONFIG.thresholds)).toBe('certain');
    expect(gradeOf(23.99, CONFIG.thresholds)).toBe('probable');
    expect(gradeOf(14, CONFIG.thresholds)).toBe('probable');
    expect(gradeOf(8, CONFIG.thresholds)).toBe('possible');
    expect(gradeOf(7.99, CONFIG.thresholds)).toBe('certainly-not');
  });

  it('edit distance counts an adjacent transposition as one edit', () => {
    expect(editDistance('smith', 'smiht')).toBe(1);
    expect(editDistance('smith', 'smyth')).toBe(1);
    expect(editDistance('abc', 'abcdefgh')).toBe(4);
    expect(editDistance('kitten', 'sitting')).toBe(3);
  });
});
