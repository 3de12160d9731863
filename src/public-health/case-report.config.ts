import { readFileSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import type { ValueSet } from '@medplum/fhirtypes';
import { ConfigurationError } from '../config/app.config';

// src/public-health and dist/public-health are both two levels below the project root.
const PROJECT_ROOT = resolve(__dirname, '..', '..');

/** Case reporting's settings (config/case-reporting.json; docs/public-health.md, Case reports). */
export interface CaseReportConfig {
  /** `system|code` of every reportable code, from the configured ValueSet. */
  reportableCodes: ReadonlySet<string>;
  /** The ValueSet's canonical URL (named in each report's Composition). */
  valueSetUrl: string;
  /** The public-health agency's Organization id: custodian of the report Bundles, owner of their Tasks. */
  agencyOrganization: string;
  /** Days without a qualifying resource after which a code starts a new episode (a new report). */
  episodeGapDays: number;
  /** True: mandated reporting is sent whatever the patient's Consent says; false: only what the PUBHLTH view shows. */
  mandatedReportingOverridesOptOut: boolean;
}

export const CASE_REPORT_CONFIG = Symbol('CASE_REPORT_CONFIG');

interface CaseReportFile {
  valueSet?: unknown;
  agencyOrganization?: unknown;
  episodeGapDays?: unknown;
  mandatedReportingOverridesOptOut?: unknown;
}

/** Reads and checks config/case-reporting.json and its ValueSet (environment overrides); a bad file stops the start. */
export function loadCaseReportConfig(file = join(PROJECT_ROOT, 'config', 'case-reporting.json'), env: NodeJS.ProcessEnv = process.env): CaseReportConfig {
  const raw = JSON.parse(readFileSync(file, 'utf8')) as CaseReportFile;
  const agency = env.CASE_REPORT_AGENCY_ORGANIZATION ?? raw.agencyOrganization;
  if (typeof agency !== 'string' || !/^[A-Za-z0-9\-.]{1,64}$/.test(agency)) {
    throw new ConfigurationError('Invalid case-reporting config: agencyOrganization must be an Organization id');
  }
  const gap = env.CASE_REPORT_EPISODE_GAP_DAYS !== undefined ? Number(env.CASE_REPORT_EPISODE_GAP_DAYS) : raw.episodeGapDays;
  if (typeof gap !== 'number' || !Number.isInteger(gap) || gap < 1 || gap > 3650) {
    throw new ConfigurationError('Invalid case-reporting config: episodeGapDays must be a whole number of days from 1 to 3650');
  }
  const override = env.CASE_REPORT_OVERRIDES_OPT_OUT !== undefined ? parseSwitch(env.CASE_REPORT_OVERRIDES_OPT_OUT) : raw.mandatedReportingOverridesOptOut;
  if (typeof override !== 'boolean') {
    throw new ConfigurationError('Invalid case-reporting config: mandatedReportingOverridesOptOut (CASE_REPORT_OVERRIDES_OPT_OUT) must be true or false');
  }
  if (typeof raw.valueSet !== 'string') throw new ConfigurationError('Invalid case-reporting config: valueSet must name a ValueSet file');
  const valueSet = JSON.parse(readFileSync(isAbsolute(raw.valueSet) ? raw.valueSet : join(PROJECT_ROOT, raw.valueSet), 'utf8')) as ValueSet;
  return { ...reportableCodesOf(valueSet), agencyOrganization: agency, episodeGapDays: gap, mandatedReportingOverridesOptOut: override };
}

function parseSwitch(value: string): boolean | undefined {
  return value === 'true' ? true : value === 'false' ? false : undefined;
}

/**
 * The codes of a ValueSet's `compose.include` concept lists. Filters and included value sets would
 * need a terminology server the exchange does not run: refused, so a list never silently shrinks.
 */
export function reportableCodesOf(valueSet: ValueSet): Pick<CaseReportConfig, 'reportableCodes' | 'valueSetUrl'> {
  if (valueSet.resourceType !== 'ValueSet' || !valueSet.url) throw new ConfigurationError('Invalid case-reporting config: valueSet is not a ValueSet with a url');
  const codes = new Set<string>();
  for (const include of valueSet.compose?.include ?? []) {
    if (!include.system || include.filter?.length || include.valueSet?.length || !include.concept?.length) {
      throw new ConfigurationError(`Invalid case-reporting ValueSet ${valueSet.url}: each include needs a system and an explicit concept list (no filters or value sets)`);
    }
    for (const c of include.concept) codes.add(`${include.system}|${c.code}`);
  }
  if (!codes.size) throw new ConfigurationError(`Invalid case-reporting ValueSet ${valueSet.url}: no codes`);
  return { reportableCodes: codes, valueSetUrl: valueSet.url };
}
