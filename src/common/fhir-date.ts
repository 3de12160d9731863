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
  const month = mo ? Number(mo) : undefined;
  const day = d ? Number(d) : undefined;
  if (month !== undefined && (month < 1 || month > 12)) return undefined;
  if (day !== undefined && (day < 1 || day > new Date(Date.UTC(year, month!, 0)).getUTCDate())) return undefined;
  if (h !== undefined && (Number(h) > 23 || Number(mi) > 59 || (s !== undefined && Number(s) > 59))) return undefined;
  const offsetMs = tz && tz !== 'Z' ? (tz[0] === '-' ? -1 : 1) * (Number(tz.slice(1, 3)) * 60 + Number(tz.slice(4, 6))) * 60000 : 0;

  let start: number;
  let end: number;
  if (month === undefined) {
    start = Date.UTC(year, 0, 1);
    end = Date.UTC(year + 1, 0, 1);
  } else if (day === undefined) {
    start = Date.UTC(year, month - 1, 1);
    end = Date.UTC(year, month, 1);
  } else if (h === undefined) {
    start = Date.UTC(year, month - 1, day);
    end = start + 86400000;
  } else {
    const ms = frac ? Number(frac.padEnd(3, '0').slice(0, 3)) : 0;
    start = Date.UTC(year, month - 1, day, Number(h), Number(mi), s ? Number(s) : 0, ms) - offsetMs;
    const unit = s === undefined ? 60000 : frac === undefined ? 1000 : 1;
    end = start + unit;
  }
  return { start: new Date(start).toISOString(), end: new Date(end).toISOString() };
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
