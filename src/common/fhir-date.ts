/**
 * A FHIR date/dateTime/instant as the half-open instant range its precision covers:
 * `2020` is [2020-01-01T00:00Z, 2021-01-01T00:00Z). Values without a time zone are read as UTC.
 */
export interface InstantRange {
  start: string;
  end: string;
}

const DATE_RE =
  /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$/;

export function parseFhirDateRange(value: string): InstantRange | undefined {
  const m = DATE_RE.exec(value);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, frac, tz] = m;
  const year = Number(y);
  // FHIR's years run from 0001 (datatypes.html#date): 0000 is not a date.
  if (year === 0) return undefined;
  const month = mo ? Number(mo) : undefined;
  const day = d ? Number(d) : undefined;
  if (month !== undefined && (month < 1 || month > 12)) return undefined;
  if (day !== undefined && (day < 1 || day > new Date(utc(year, month!, 0)).getUTCDate())) return undefined;
  if (h !== undefined && (Number(h) > 23 || Number(mi) > 59 || (s !== undefined && Number(s) > 59))) return undefined;
  const offsetMs = tz && tz !== 'Z' ? (tz[0] === '-' ? -1 : 1) * (Number(tz.slice(1, 3)) * 60 + Number(tz.slice(4, 6))) * 60000 : 0;

  let start: number;
  let end: number;
  if (month === undefined) {
    start = utc(year, 0, 1);
    end = utc(year + 1, 0, 1);
  } else if (day === undefined) {
    start = utc(year, month - 1, 1);
    end = utc(year, month, 1);
  } else if (h === undefined) {
    start = utc(year, month - 1, day);
    end = start + 86400000;
  } else {
    const ms = frac ? Number(frac.padEnd(3, '0').slice(0, 3)) : 0;
    start = utc(year, month - 1, day) + Number(h) * 3600000 + Number(mi) * 60000 + (s ? Number(s) : 0) * 1000 + ms - offsetMs;
    const unit = s === undefined ? 60000 : frac === undefined ? 1000 : 1;
    end = start + unit;
  }
  return { start: instantText(start, 'start'), end: instantText(end, 'end') };
}

/** `Date.UTC` without its two-digit-year rule (`Date.UTC(50, 0)` is 1950). */
function utc(year: number, monthIndex: number, day: number): number {
  return new Date(0).setUTCFullYear(year, monthIndex, day);
}

const FIRST_INSTANT = utc(1, 0, 1);
const AFTER_LAST_INSTANT = utc(10000, 0, 1);

/**
 * An instant as text PostgreSQL and FHIR can both read (years 0001-9999). Past either end a range
 * is unbounded there: the end of year 9999 (a common "no end") is `infinity`, not year 10000, which
 * `toISOString` writes as `+010000-…` and PostgreSQL refuses; a start past 9999 (the last day in a
 * zone west of UTC) is the last instant there is, a start before 0001 `-infinity`, an end before
 * 0001 the first instant. Date search and the index both treat `±infinity` as open.
 */
export function instantText(ms: number, bound: 'start' | 'end'): string {
  if (Number.isNaN(ms)) return bound === 'start' ? '-infinity' : 'infinity';
  if (ms >= AFTER_LAST_INSTANT) return bound === 'end' ? 'infinity' : new Date(AFTER_LAST_INSTANT - 1).toISOString();
  if (ms < FIRST_INSTANT) return bound === 'start' ? '-infinity' : new Date(FIRST_INSTANT).toISOString();
  return new Date(ms).toISOString();
}

/**
 * A raw `+` in a URL query decodes to a space, so `date=2016-05-25T23:14:15+00:00` arrives as
 * `2016-05-25T23:14:15 00:00`: say how to send it (empty when that is not the problem).
 */
export function plusInZoneHint(value: string): string {
  return /T\d{2}:\d{2}(:\d{2}(\.\d+)?)? \d{2}:\d{2}$/.test(value)
    ? `; a '+' in the time zone must be sent as %2B (a raw '+' in a URL query means a space)`
    : '';
}
