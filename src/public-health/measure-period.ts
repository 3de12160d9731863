import { FhirError } from '../common/fhir-error';

const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;

/** A reporting period: whole UTC days [from, to), and the dates as given. */
export interface ReportingPeriod {
  start: string;
  end: string;
  from: Date;
  to: Date;
}

/**
 * The period of `$evaluate-measure`: a whole calendar month, quarter (starting January, April, July
 * or October) or year, in UTC. Any other window is refused (400 naming the parameter): counts of
 * overlapping windows (a year and the same year less one day) could be subtracted to isolate a
 * person, whatever the suppression of each report (docs/public-health.md).
 */
export function reportingPeriod(start: string, end: string): ReportingPeriod {
  const from = day(start, 'periodStart');
  const last = day(end, 'periodEnd');
  if (from.getUTCDate() !== 1) throw FhirError.badRequest(`periodStart ${start} is not the first day of a month`, ['periodStart']);
  const to = new Date(last.getTime() + 86_400_000);
  if (to.getUTCDate() !== 1) throw FhirError.badRequest(`periodEnd ${end} is not the last day of a month`, ['periodEnd']);
  const months = (to.getUTCFullYear() - from.getUTCFullYear()) * 12 + to.getUTCMonth() - from.getUTCMonth();
  const startMonth = from.getUTCMonth();
  const whole = months === 1 || (months === 3 && startMonth % 3 === 0) || (months === 12 && startMonth === 0);
  if (!whole) {
    throw FhirError.badRequest(
      `periodStart ${start} to periodEnd ${end} is not one whole calendar month, quarter (January, April, July, October) or year`,
      ['periodStart', 'periodEnd'],
    );
  }
  return { start, end, from, to };
}

function day(text: string, name: string): Date {
  const m = DATE.exec(text);
  const d = m ? new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]))) : undefined;
  if (!m || !d || d.getUTCFullYear() !== Number(m[1]) || d.getUTCMonth() !== Number(m[2]) - 1 || d.getUTCDate() !== Number(m[3])) {
    throw FhirError.badRequest(`${name} must be a full date YYYY-MM-DD (the first or last day of a month)`, [name]);
  }
  return d;
}
