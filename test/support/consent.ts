/**
 * A patient-privacy Consent (opt-out policy rule) about `Patient/{patientId}` with `provision`
 * (default: deny all sharing) — the one shape the e2e tests write; `extra` adds or overrides fields.
 */
export function consentResource(patientId: string, provision: Record<string, unknown> = { type: 'deny' }, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    resourceType: 'Consent',
    status: 'active',
    scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
    category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
    patient: { reference: `Patient/${patientId}` },
    dateTime: '2026-01-01T00:00:00Z',
    policyRule: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'OPTOUT' }] },
    provision,
    ...extra,
  };
}
