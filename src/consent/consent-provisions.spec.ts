import type { Consent } from '@medplum/fhirtypes';
import { FhirError } from '../common/fhir-error';
import { provisionRows } from './consent-provisions';

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
