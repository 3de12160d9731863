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
        actorOrg: null, purpose: null, resourceClass: null, securityLabel: null, dataRef: null, period: [null, null], dataPeriod: [null, null],
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
      ['provision', 0, true, 'a', null, ['2026-01-01T00:00:00.000Z', '2027-01-01T00:00:00.000Z']],
      ['provision', 0, true, 'b', null, ['2026-01-01T00:00:00.000Z', '2027-01-01T00:00:00.000Z']],
      ['provision.provision[0]', 1, false, 'a', 'Observation', ['2026-06-01T00:00:00.000Z', '2027-01-01T00:00:00.000Z']],
      ['provision.provision[0]', 1, false, 'b', 'Observation', ['2026-06-01T00:00:00.000Z', '2027-01-01T00:00:00.000Z']],
    ]);
  });

  it('a provision limited to actions other than reading does not decide reads', () => {
    const rows = provisionRows(consent({ type: 'deny', action: [{ coding: [{ code: 'correct' }] }] }), 1);
    expect(rows).toEqual([]);
  });

  it('refuses what it cannot enforce with 422 naming the element', () => {
    const cases: [Consent['provision'], string, string][] = [
      [{ type: 'deny', actor: [{ role: { text: 'x' }, reference: { reference: 'Practitioner/1' } }] }, 'Consent.provision.actor[0].reference', 'must be an Organization'],
      [{ type: 'deny', code: [{ text: 'x' }] }, 'Consent.provision.code', 'is not enforced'],
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
