import type { HieRole } from '../fhir/pipeline/principal';

/** HL7 v3 PurposeOfUse codes a client may be registered for. */
export const PURPOSES_OF_USE = ['TREAT', 'ETREAT', 'HPAYMT', 'HOPERAT', 'PUBHLTH', 'HRESCH', 'PATRQT', 'HSYSADMIN', 'HACCRED', 'HTEST'];

/**
 * Which purposes each role may hold (docs/security.md, Purposes of use by role). Treatment and
 * break-the-glass are for treating organizations only: the opt-out policy shares other
 * organizations' data for TREAT, and ETREAT skips patients' denials, so an agency, auditor or
 * operator holding either would read what its role was never meant to. Default deny: a role or
 * purpose not listed here is refused.
 */
export const PURPOSES_BY_ROLE: Readonly<Record<HieRole, readonly string[]>> = {
  hospital: ['TREAT', 'ETREAT', 'HPAYMT', 'HOPERAT', 'HRESCH', 'PATRQT', 'HTEST'],
  'public-health': ['PUBHLTH', 'HRESCH', 'HTEST'],
  auditor: ['HOPERAT', 'HACCRED', 'HTEST'],
  admin: ['HSYSADMIN', 'HTEST'],
};

export function purposeAllowedForRole(role: string | undefined, purpose: string | undefined): boolean {
  if (!role || !purpose || !Object.hasOwn(PURPOSES_BY_ROLE, role)) return false;
  return PURPOSES_BY_ROLE[role as HieRole].includes(purpose);
}
