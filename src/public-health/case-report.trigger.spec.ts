import { join } from 'node:path';
import { ConfigurationError } from '../config/app.config';
import { loadCaseReportConfig, reportableCodesOf } from './case-report.config';
import { caseReportTriggerOf } from './case-report.trigger';

const CONFIG_FILE = join(__dirname, '..', '..', 'config', 'case-reporting.json');
const config = loadCaseReportConfig(CONFIG_FILE, {});
const LAB = [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'laboratory' }] }];

describe('case-report triggers', () => {
  it('loads the shipped ValueSet: SNOMED CT, ICD-10-CM and LOINC codes, and the defaults', () => {
    expect(config.reportableCodes.has('http://snomed.info/sct|840539006')).toBe(true);
    expect(config.reportableCodes.has('http://hl7.org/fhir/sid/icd-10-cm|U07.1')).toBe(true);
    expect(config.reportableCodes.has('http://loinc.org|94500-6')).toBe(true);
    expect(config).toMatchObject({ agencyOrganization: 'public-health-agency', episodeGapDays: 90, mandatedReportingOverridesOptOut: true, valueSetUrl: 'http://hie.example.org/fhir/ValueSet/reportable-conditions' });
  });

  it('takes the environment over the file and refuses bad values', () => {
    expect(loadCaseReportConfig(CONFIG_FILE, { CASE_REPORT_OVERRIDES_OPT_OUT: 'false', CASE_REPORT_EPISODE_GAP_DAYS: '30' })).toMatchObject({ mandatedReportingOverridesOptOut: false, episodeGapDays: 30 });
    expect(() => loadCaseReportConfig(CONFIG_FILE, { CASE_REPORT_OVERRIDES_OPT_OUT: 'yes' })).toThrow(ConfigurationError);
    expect(() => loadCaseReportConfig(CONFIG_FILE, { CASE_REPORT_EPISODE_GAP_DAYS: '0' })).toThrow(/episodeGapDays/);
    expect(() => reportableCodesOf({ resourceType: 'ValueSet', status: 'active', url: 'x', compose: { include: [{ system: 'http://snomed.info/sct', filter: [{ property: 'concept', op: 'is-a', value: '1' }] }] } })).toThrow(/explicit concept list/);
  });

  it('a Condition: its first reportable coding, the onset as clinical date, the encounter', () => {
    const trigger = caseReportTriggerOf(
      {
        resourceType: 'Condition',
        subject: { reference: 'Patient/p1' },
        encounter: { reference: 'Encounter/e1' },
        code: { coding: [{ system: 'http://snomed.info/sct', code: '1' }, { system: 'http://hl7.org/fhir/sid/icd-10-cm', code: 'U07.1', display: 'COVID-19' }] },
        onsetDateTime: '2026-03-01',
        recordedDate: '2026-03-05',
      },
      config.reportableCodes,
    );
    expect(trigger).toEqual({ patientId: 'p1', encounterId: 'e1', code: { system: 'http://hl7.org/fhir/sid/icd-10-cm', code: 'U07.1', display: 'COVID-19' }, clinicalDate: '2026-03-01T00:00:00.000Z' });
  });

  it('not a trigger: refuted or entered-in-error Conditions, non-laboratory or cancelled Observations, other codes, no Patient subject', () => {
    const covid = { coding: [{ system: 'http://snomed.info/sct', code: '840539006' }] };
    const pcr = { coding: [{ system: 'http://loinc.org', code: '94500-6' }] };
    const subject = { reference: 'Patient/p1' };
    const refuted = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-ver-status', code: 'refuted' }] };
    expect(caseReportTriggerOf({ resourceType: 'Condition', subject, code: covid, verificationStatus: refuted }, config.reportableCodes)).toBeUndefined();
    expect(caseReportTriggerOf({ resourceType: 'Condition', subject: { reference: 'Group/g1' }, code: covid }, config.reportableCodes)).toBeUndefined();
    expect(caseReportTriggerOf({ resourceType: 'Condition', subject, code: { coding: [{ system: 'http://snomed.info/sct', code: '38341003' }] } }, config.reportableCodes)).toBeUndefined();
    expect(caseReportTriggerOf({ resourceType: 'Observation', status: 'final', subject, code: pcr }, config.reportableCodes)).toBeUndefined();
    expect(caseReportTriggerOf({ resourceType: 'Observation', status: 'cancelled', category: LAB, subject, code: pcr }, config.reportableCodes)).toBeUndefined();
    expect(caseReportTriggerOf({ resourceType: 'Observation', status: 'final', category: LAB, subject, code: pcr, effectiveDateTime: '2026-03-01T08:00:00Z' }, config.reportableCodes)).toMatchObject({
      patientId: 'p1',
      code: { system: 'http://loinc.org', code: '94500-6' },
      clinicalDate: '2026-03-01T08:00:00.000Z',
    });
  });
});
