import type { Consent } from '@medplum/fhirtypes';
import { FhirError } from '../common/fhir-error';
import { consentPatientId, provisionRows } from './consent-provisions';

const org = (id: string) => ({ role: { text: 'recipient' }, reference: { reference: `Organization/${id}` } });
const consent = (provision: Consent['provision'], status: Consent['status'] = 'active'): Consent =>
  ({ resourceType: 'Consent', id: 'c1', status, patient: { reference: 'Patient/p1' }, provision }) as Consent;

describe('provisionRows (Consent -> consent_provision rows)', () => {
  it('materializes nothing for a Consent that is not active', () => {
    for (const status of ['inactive', 'draft', 'proposed', 'rejected', 'entered-in-error'] as const) {
      expect(provisionRows(consent({ type: 'deny' }, status), 1)).toEqual([]);
    }
  });

  it('a root denial: one row matching anything', () => {
    expect(provisionRows(consent({ type: 'deny' }), 3)).toEqual([
      {
        consentId: 'c1', consentVersion: 3, provisionPath: 'provision', patientId: 'p1', depth: 0, permit: false,
        actorOrg: null, actorRef: null, purpose: null, resourceClass: null, securityLabel: null, dataRef: null, codeSystem: null, code: null,
        period: [null, null], dataPeriod: [null, null],
      },
    ]);
  });

  it('nested exceptions inherit the parent criteria narrowed by their own; lists expand to one row per combination', () => {
    const rows = provisionRows(
      consent({
        type: 'permit',
        actor: [org('a'), org('b')],
        period: { start: '2026-01-01', end: '2027-01-01' },
        provision: [
          { type: 'deny', class: [{ system: 'http://hl7.org/fhir/resource-types', code: 'Observation' }], period: { start: '2026-06-01' } },
          // Disjoint with the parent's actors: decides nothing.
          { type: 'deny', actor: [org('c')] },
        ],
      }),
      1,
    );
    expect(rows.map((r) => [r.provisionPath, r.depth, r.permit, r.actorOrg, r.resourceClass, r.period])).toEqual([
      // The end date is inclusive: the period runs to the end of 1 Jan 2027.
      ['provision', 0, true, 'a', null, ['2026-01-01T00:00:00.000Z', '2027-01-02T00:00:00.000Z']],
      ['provision', 0, true, 'b', null, ['2026-01-01T00:00:00.000Z', '2027-01-02T00:00:00.000Z']],
      ['provision.provision[0]', 1, false, 'a', 'Observation', ['2026-06-01T00:00:00.000Z', '2027-01-02T00:00:00.000Z']],
      ['provision.provision[0]', 1, false, 'b', 'Observation', ['2026-06-01T00:00:00.000Z', '2027-01-02T00:00:00.000Z']],
    ]);
  });

  it('individual actors and codes: one row per actor and Coding; nested codes intersect with the parent', () => {
    const who = (ref: string) => ({ role: { text: 'x' }, reference: { reference: ref } });
    const rows = provisionRows(
      consent({
        type: 'deny',
        actor: [org('a'), who('Practitioner/dr-x'), who('CareTeam/t1')],
        code: [{ coding: [{ system: 'http://loinc.org', code: '8480-6' }, { code: 'bp' }] }],
        provision: [
          { type: 'permit', code: [{ coding: [{ code: 'bp' }] }] },
          // No code in common with the parent: decides nothing.
          { type: 'permit', code: [{ coding: [{ system: 'http://loinc.org', code: '2345-7' }] }] },
        ],
      }),
      1,
    );
    expect(rows.map((r) => [r.provisionPath, r.permit, r.actorOrg, r.actorRef, r.codeSystem, r.code])).toEqual([
      ['provision', false, 'a', null, 'http://loinc.org', '8480-6'],
      ['provision', false, 'a', null, null, 'bp'],
      ['provision', false, null, 'Practitioner/dr-x', 'http://loinc.org', '8480-6'],
      ['provision', false, null, 'Practitioner/dr-x', null, 'bp'],
      ['provision', false, null, 'CareTeam/t1', 'http://loinc.org', '8480-6'],
      ['provision', false, null, 'CareTeam/t1', null, 'bp'],
      ['provision.provision[0]', true, 'a', null, null, 'bp'],
      ['provision.provision[0]', true, null, 'Practitioner/dr-x', null, 'bp'],
      ['provision.provision[0]', true, null, 'CareTeam/t1', null, 'bp'],
    ]);
  });

  it('a date-only period end covers its whole day, month or year (FHIR Period.end is inclusive)', () => {
    const ends = ['2019-12-31', '2019-12', '2019', '2019-06-30T12:00:00Z'].map((end) => provisionRows(consent({ type: 'deny', dataPeriod: { start: '2019', end } }), 1)[0].dataPeriod);
    expect(ends).toEqual([
      ['2019-01-01T00:00:00.000Z', '2020-01-01T00:00:00.000Z'],
      ['2019-01-01T00:00:00.000Z', '2020-01-01T00:00:00.000Z'],
      ['2019-01-01T00:00:00.000Z', '2020-01-01T00:00:00.000Z'],
      ['2019-01-01T00:00:00.000Z', '2019-06-30T12:00:00.000Z'],
    ]);
  });

  it('a provision limited to actions other than reading does not decide reads', () => {
    const rows = provisionRows(consent({ type: 'deny', action: [{ coding: [{ code: 'correct' }] }] }), 1);
    expect(rows).toEqual([]);
  });

  it('refuses what it cannot enforce with 422 naming the element', () => {
    const cases: [Consent['provision'], string, string][] = [
      [{ type: 'deny', actor: [{ role: { text: 'x' }, reference: { reference: 'RelatedPerson/1' } }] }, 'Consent.provision.actor[0].reference', 'must reference an Organization, Practitioner'],
      [{ type: 'deny', actor: [{ role: { text: 'x' }, reference: { reference: 'https://other.example/Practitioner/1' } }] }, 'Consent.provision.actor[0].reference', 'by id'],
      [{ type: 'deny', code: [{ text: 'x' }] }, 'Consent.provision.code[0]', 'must have a coding'],
      [{ type: 'deny', code: [{ coding: [{ code: 'a' }, { system: 'http://loinc.org' }] }] }, 'Consent.provision.code[0].coding[1].code', 'must have a code'],
      [{ type: 'deny', data: [{ meaning: 'related', reference: { reference: 'Observation/1' } }] }, 'Consent.provision.data[0]', 'must name one resource'],
      [{ type: 'deny', provision: [{} as never] }, 'Consent.provision.provision[0].type', 'must be permit or deny'],
      [{ type: 'deny', dataPeriod: { start: '2026-02-01', end: '2026-01-01' } }, 'Consent.provision.dataPeriod', 'ends before it starts'],
    ];
    for (const [provision, expression, message] of cases) {
      let error: unknown;
      try {
        provisionRows(consent(provision), 1);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(FhirError);
      expect({ status: (error as FhirError).status, issue: (error as FhirError).issues[0] }).toMatchObject({
        status: 422,
        issue: { code: 'business-rule', expression: [expression], diagnostics: expect.stringContaining(message) },
      });
    }
  });
});

describe('provisionRows: each criterion, and how nesting narrows it', () => {
  const label = (system: string | undefined, code: string) => ({ system, code });
  const cls = (code: string | undefined) => ({ system: 'http://hl7.org/fhir/resource-types', code });
  const purpose = (code: string) => ({ system: 'http://terminology.hl7.org/CodeSystem/v3-ActReason', code });
  const only = (provision: Consent['provision']) => provisionRows(consent(provision), 1);

  it('the patient: a Patient referenced by id, else 422 on Consent.patient; an active Consent without provisions decides nothing', () => {
    expect(consentPatientId({ resourceType: 'Consent', patient: { reference: 'Patient/p-1.a' } } as Consent)).toBe('p-1.a');
    for (const reference of ['Group/p1', 'Patient/', 'http://x/Patient/p1', 'Patient/p1/_history/2', `Patient/${'a'.repeat(65)}`]) {
      expect(consentPatientId({ resourceType: 'Consent', patient: { reference } } as Consent)).toBeUndefined();
    }
    expect(consentPatientId({ resourceType: 'Consent' } as Consent)).toBeUndefined();
    const noPatient = { resourceType: 'Consent', id: 'c1', status: 'active', provision: { type: 'deny' } } as Consent;
    expect(() => provisionRows(noPatient, 1)).toThrow(expect.objectContaining({ status: 422, issues: [expect.objectContaining({ code: 'business-rule', expression: ['Consent.patient'], diagnostics: 'Consent.patient must reference a Patient by id (Patient/{id})' })] }));
    expect(provisionRows({ ...consent(undefined), provision: undefined }, 1)).toEqual([]);
  });

  it('purposes, classes and labels: codes as given (invalid codes dropped), labels as system|code', () => {
    const rows = only({
      type: 'permit',
      purpose: [purpose('TREAT'), purpose('bad code'), { system: 'x' }],
      class: [cls('Observation'), cls(undefined)],
      securityLabel: [label('http://terminology.hl7.org/CodeSystem/v3-Confidentiality', 'R'), label(undefined, 'local')],
    });
    expect(rows.map((r) => [r.purpose, r.resourceClass, r.securityLabel])).toEqual([
      ['TREAT', 'Observation', 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R'],
      ['TREAT', 'Observation', '|local'],
    ]);
    // Only invalid codes: no limit at all (as if absent).
    expect(only({ type: 'deny', purpose: [purpose('no way')], class: [cls('')] }).map((r) => [r.purpose, r.resourceClass])).toEqual([[null, null]]);
    expect(only({ type: 'deny', securityLabel: [{ system: 's' }] })[0].securityLabel).toBe('s|');
  });

  it('data: one row per named instance', () => {
    const rows = only({ type: 'deny', data: [{ meaning: 'instance', reference: { reference: 'Observation/o1' } }, { meaning: 'instance', reference: { reference: 'DiagnosticReport/r-2' } }] });
    expect(rows.map((r) => r.dataRef)).toEqual(['Observation/o1', 'DiagnosticReport/r-2']);
    for (const reference of ['observation/o1', 'Observation/', 'Observation/o1/_history/1', 'x Observation/o1', undefined]) {
      expect(() => only({ type: 'deny', data: [{ meaning: 'instance', reference: { reference } }] })).toThrow(FhirError);
    }
  });

  it('actions: reading actions (access, use, disclose, collect) decide reads, alone or beside others', () => {
    for (const code of ['access', 'use', 'disclose', 'collect']) {
      expect(only({ type: 'deny', action: [{ coding: [{ code: 'correct' }, { code }] }] })).toHaveLength(1);
    }
    expect(only({ type: 'deny', action: [{ coding: [{ code: 'correct' }] }, { coding: [{}] }, {}] })).toEqual([]);
    // An action without codings is no action limit.
    expect(only({ type: 'deny', action: [{}] })).toHaveLength(1);
  });

  it('a provision that decides no reads still hands its criteria to its exceptions', () => {
    const rows = only({ type: 'deny', action: [{ coding: [{ code: 'correct' }] }], actor: [org('a')], provision: [{ type: 'permit' }] });
    expect(rows.map((r) => [r.provisionPath, r.depth, r.permit, r.actorOrg])).toEqual([['provision.provision[0]', 1, true, 'a']]);
  });

  it('nesting intersects every list: purposes, classes, labels, data and codes; an empty intersection decides nothing, nor do its exceptions', () => {
    const parent = {
      type: 'deny' as const,
      purpose: [purpose('TREAT'), purpose('HPAYMT')],
      class: [cls('Observation'), cls('Condition')],
      securityLabel: [label('s', 'R'), label('s', 'N')],
      data: [{ meaning: 'instance' as const, reference: { reference: 'Observation/o1' } }, { meaning: 'instance' as const, reference: { reference: 'Condition/c1' } }],
      code: [{ coding: [{ system: 'http://loinc.org', code: '1' }, { system: 'http://loinc.org', code: '2' }] }],
    };
    const rows = only({
      ...parent,
      provision: [
        {
          type: 'permit',
          purpose: [purpose('HPAYMT'), purpose('ETREAT')],
          class: [cls('Condition')],
          securityLabel: [label('s', 'N')],
          data: [{ meaning: 'instance', reference: { reference: 'Condition/c1' } }],
          code: [{ coding: [{ system: 'http://loinc.org', code: '2' }] }],
          provision: [{ type: 'deny' }],
        },
        { type: 'permit', purpose: [purpose('ETREAT')], provision: [{ type: 'deny' }] },
        { type: 'permit', class: [cls('Patient')] },
        { type: 'permit', securityLabel: [label('s', 'V')] },
        { type: 'permit', data: [{ meaning: 'instance', reference: { reference: 'Observation/o9' } }] },
        { type: 'permit', code: [{ coding: [{ system: 'http://snomed.info/sct', code: '2' }] }] },
      ],
    });
    expect(rows.filter((r) => r.depth > 0).map((r) => [r.provisionPath, r.depth, r.permit, r.purpose, r.resourceClass, r.securityLabel, r.dataRef, r.codeSystem, r.code])).toEqual([
      ['provision.provision[0]', 1, true, 'HPAYMT', 'Condition', 's|N', 'Condition/c1', 'http://loinc.org', '2'],
      // The exception's exception keeps the narrowed criteria.
      ['provision.provision[0].provision[0]', 2, false, 'HPAYMT', 'Condition', 's|N', 'Condition/c1', 'http://loinc.org', '2'],
    ]);
    expect(rows.filter((r) => r.depth === 0)).toHaveLength(2 * 2 * 2 * 2 * 2);
  });

  it('a Coding without a system matches any system; a system names its code system', () => {
    const rows = only({ type: 'deny', code: [{ coding: [{ code: 'a|b' }, { system: 'http://loinc.org', code: '1' }] }] });
    expect(rows.map((r) => [r.codeSystem, r.code])).toEqual([
      [null, 'a|b'],
      ['http://loinc.org', '1'],
    ]);
  });

  it('periods narrow to the later start and the earlier end; a disjoint or empty one decides nothing', () => {
    const rows = only({
      type: 'deny',
      period: { start: '2026-01-01T00:00:00Z', end: '2026-12-31T00:00:00Z' },
      dataPeriod: { start: '2020-01-01T00:00:00Z' },
      provision: [
        { type: 'permit', period: { start: '2026-03-01T00:00:00Z', end: '2027-06-01T00:00:00Z' }, dataPeriod: { start: '2019-01-01T00:00:00Z', end: '2021-01-01T00:00:00Z' } },
        { type: 'permit', period: { start: '2025-01-01T00:00:00Z', end: '2026-02-01T00:00:00Z' } },
        // Disjoint from the parent's period.
        { type: 'permit', period: { start: '2027-01-01T00:00:00Z' } },
        // Touching only at the parent's end: [end, …) is empty.
        { type: 'permit', period: { start: '2026-12-31T00:00:00Z' } },
        { type: 'permit', dataPeriod: { end: '2019-12-31T23:00:00Z' } },
      ],
    });
    expect(rows.map((r) => [r.provisionPath, r.period, r.dataPeriod])).toEqual([
      ['provision', ['2026-01-01T00:00:00.000Z', '2026-12-31T00:00:00.000Z'], ['2020-01-01T00:00:00.000Z', null]],
      ['provision.provision[0]', ['2026-03-01T00:00:00.000Z', '2026-12-31T00:00:00.000Z'], ['2020-01-01T00:00:00.000Z', '2021-01-01T00:00:00.000Z']],
      ['provision.provision[1]', ['2026-01-01T00:00:00.000Z', '2026-02-01T00:00:00.000Z'], ['2020-01-01T00:00:00.000Z', null]],
    ]);
  });

  it('a date-only start begins its year, month or day; an empty period (start = end) decides nothing', () => {
    const starts = ['2019', '2019-03', '2019-03-05'].map((start) => only({ type: 'deny', period: { start } })[0].period[0]);
    expect(starts).toEqual(['2019-01-01T00:00:00.000Z', '2019-03-01T00:00:00.000Z', '2019-03-05T00:00:00.000Z']);
    expect(only({ type: 'deny', period: { end: '2019-02' } })[0].period).toEqual([null, '2019-03-01T00:00:00.000Z']);
    // An equal start and end are allowed by FHIR (not "ends before it starts") but cover nothing here.
    expect(only({ type: 'deny', period: { start: '2019-01-01T00:00:00Z', end: '2019-01-01T00:00:00Z' } })).toEqual([]);
  });

  it('refuses a period that ends before it starts, naming Consent.…period', () => {
    expect(() => only({ type: 'deny', provision: [{ type: 'permit', period: { start: '2026-02-01', end: '2026-01-01' } }] })).toThrow(
      expect.objectContaining({ status: 422, issues: [expect.objectContaining({ expression: ['Consent.provision.provision[0].period'], diagnostics: 'provision.provision[0].period ends before it starts' })] }),
    );
  });

  it('refuses an actor or data entry without a reference, or an actor reference with more after the id, as 422', () => {
    const cases: [Consent['provision'], string][] = [
      [{ type: 'deny', actor: [{ role: { text: 'x' } } as never] }, 'Consent.provision.actor[0].reference'],
      [{ type: 'deny', actor: [{ role: { text: 'x' }, reference: { display: 'Dr X' } }] }, 'Consent.provision.actor[0].reference'],
      [{ type: 'deny', actor: [{ role: { text: 'x' }, reference: { reference: 'Organization/o1/_history/2' } }] }, 'Consent.provision.actor[0].reference'],
      [{ type: 'deny', data: [{ meaning: 'instance' } as never] }, 'Consent.provision.data[0]'],
    ];
    for (const [provision, expression] of cases) {
      expect(() => only(provision)).toThrow(expect.objectContaining({ status: 422, issues: [expect.objectContaining({ code: 'business-rule', expression: [expression] })] }));
    }
  });

  it('names the full path of a refused nested element', () => {
    const bad = { type: 'deny' as const, provision: [{ type: 'permit' as const }, { type: 'permit' as const, code: [{ coding: [{ system: 's' }] }] }] };
    expect(() => only(bad)).toThrow(
      expect.objectContaining({
        issues: [expect.objectContaining({ expression: ['Consent.provision.provision[1].code[0].coding[0].code'], diagnostics: 'provision.provision[1].code[0].coding[0] must have a code' })],
      }),
    );
  });
});
