import { parseFhirDateRange, plusInZoneHint } from './fhir-date';

describe('FHIR date precision: the instant range a value covers', () => {
  it.each([
    // [value, start, end]: the range is half-open, [start, end)
    ['2020', '2020-01-01T00:00:00.000Z', '2021-01-01T00:00:00.000Z'],
    ['2024-02', '2024-02-01T00:00:00.000Z', '2024-03-01T00:00:00.000Z'],
    ['2020-12', '2020-12-01T00:00:00.000Z', '2021-01-01T00:00:00.000Z'],
    ['2024-02-29', '2024-02-29T00:00:00.000Z', '2024-03-01T00:00:00.000Z'],
    ['2020-12-31', '2020-12-31T00:00:00.000Z', '2021-01-01T00:00:00.000Z'],
    ['2020-05-01T10:00', '2020-05-01T10:00:00.000Z', '2020-05-01T10:01:00.000Z'],
    ['2020-05-01T10:00:05', '2020-05-01T10:00:05.000Z', '2020-05-01T10:00:06.000Z'],
    ['2020-05-01T10:00:05Z', '2020-05-01T10:00:05.000Z', '2020-05-01T10:00:06.000Z'],
    ['2020-05-01T10:00:05.1Z', '2020-05-01T10:00:05.100Z', '2020-05-01T10:00:05.101Z'],
    ['2020-05-01T10:00:05.123456Z', '2020-05-01T10:00:05.123Z', '2020-05-01T10:00:05.124Z'],
    // Offsets move the instant: 10:00+02:00 is 08:00Z, 10:00-05:30 is 15:30Z.
    ['2020-05-01T10:00:00+02:00', '2020-05-01T08:00:00.000Z', '2020-05-01T08:00:01.000Z'],
    ['2020-05-01T10:00:00-05:30', '2020-05-01T15:30:00.000Z', '2020-05-01T15:30:01.000Z'],
    ['2020-05-01T10:00+01:00', '2020-05-01T09:00:00.000Z', '2020-05-01T09:01:00.000Z'],
    ['2020-05-01T00:00:00+00:00', '2020-05-01T00:00:00.000Z', '2020-05-01T00:00:01.000Z'],
    ['2020-05-01T23:59:59Z', '2020-05-01T23:59:59.000Z', '2020-05-02T00:00:00.000Z'],
    ['2020-01-01T00:00:00.000Z', '2020-01-01T00:00:00.000Z', '2020-01-01T00:00:00.001Z'],
    // The ends of FHIR's years: past 9999 a range is open (year 10000 is no ISO instant PostgreSQL reads).
    ['9999', '9999-01-01T00:00:00.000Z', 'infinity'],
    ['9999-12-31', '9999-12-31T00:00:00.000Z', 'infinity'],
    ['9999-12-31T23:30:00-05:00', '9999-12-31T23:59:59.999Z', 'infinity'],
    ['0001-01-01T00:00:00+01:00', '-infinity', '0001-01-01T00:00:00.000Z'],
    // Years below 100 are themselves, not 1900 + the year.
    ['0050', '0050-01-01T00:00:00.000Z', '0051-01-01T00:00:00.000Z'],
    ['0004-02-29', '0004-02-29T00:00:00.000Z', '0004-03-01T00:00:00.000Z'],
    ['0099-12-31T10:00Z', '0099-12-31T10:00:00.000Z', '0099-12-31T10:01:00.000Z'],
  ])('%s covers [%s, %s)', (value, start, end) => {
    expect(parseFhirDateRange(value)).toEqual({ start, end });
  });

  it.each([
    ['month 13', '2020-13'],
    ['month 0', '2020-00'],
    ['day 0', '2020-01-00'],
    ['30 February', '2020-02-30'],
    ['29 February of a common year', '2023-02-29'],
    ['31 April', '2020-04-31'],
    ['hour 24', '2020-01-01T24:00'],
    ['minute 60', '2020-01-01T10:60'],
    ['second 60', '2020-01-01T10:00:60Z'],
    ['an hour without minutes', '2020-01-01T10'],
    ['a two-digit year', '20'],
    ['year 0000', '0000'],
    ['29 February of year 0100 (not a leap year)', '0100-02-29'],
    ['a prefix left on', 'ge2020'],
    ['trailing text', '2020-01-01x'],
    ['leading text', 'x2020'],
    ['a time zone without a colon', '2020-01-01T10:00:00+0200'],
    ['an empty string', ''],
    ['ten fraction digits', '2020-01-01T10:00:00.0123456789Z'],
  ])('refuses %s (%s)', (_name, value) => {
    expect(parseFhirDateRange(value)).toBeUndefined();
  });

  it('accepts the last valid day, hour, minute and second of each field', () => {
    expect(parseFhirDateRange('2020-01-31')).toEqual({ start: '2020-01-31T00:00:00.000Z', end: '2020-02-01T00:00:00.000Z' });
    expect(parseFhirDateRange('2020-04-30')?.start).toBe('2020-04-30T00:00:00.000Z');
    expect(parseFhirDateRange('2020-12-01T23:59:59Z')?.start).toBe('2020-12-01T23:59:59.000Z');
    expect(parseFhirDateRange('2020-01-01T00:00:00.123456789Z')?.start).toBe('2020-01-01T00:00:00.123Z');
  });
});

describe('plusInZoneHint: a raw + in a time zone, decoded to a space', () => {
  const hint = "; a '+' in the time zone must be sent as %2B (a raw '+' in a URL query means a space)";

  it.each([
    ['minutes', '2016-05-25T23:14 00:00'],
    ['seconds', '2016-05-25T23:14:15 00:00'],
    ['a fraction', '2016-05-25T23:14:15.123 05:30'],
  ])('explains a time with %s followed by a space and an offset', (_name, value) => {
    expect(plusInZoneHint(value)).toBe(hint);
  });

  it.each([
    ['a valid + offset', '2016-05-25T23:14:15+00:00'],
    ['a date without a time', '2016-05-25 00:00'],
    ['an offset without a colon', '2016-05-25T23:14:15 0000'],
    ['a one-digit hour in the offset', '2016-05-25T23:14:15 0:00'],
    ['text after the offset', '2016-05-25T23:14:15 00:00x'],
    ['a fraction point without digits', '2016-05-25T23:14:15. 00:00'],
    ['seconds of one digit', '2016-05-25T23:14:1 00:00'],
    ['a minute of one digit', '2016-05-25T23:1 00:00'],
    ['an hour of one digit', '2016-05-25T2:14 00:00'],
    ['two spaces', '2016-05-25T23:14:15  00:00'],
    ['an offset with one-digit minutes', '2016-05-25T23:14:15 00:0'],
  ])('says nothing for %s', (_name, value) => {
    expect(plusInZoneHint(value)).toBe('');
  });
});
