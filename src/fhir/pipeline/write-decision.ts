import type { Resource } from '@medplum/fhirtypes';
import type { Principal } from './principal';

/*
 * The vocabulary of write decisions (write-policy.ts has the policies and their registry); apart
 * so that AccessContext and InteractionResult can speak of decisions without importing Interaction.
 */

/** The stored version a policy judges a change of (storage's StoredVersion satisfies it). */
export interface StoredState {
  versionId: number;
  deleted: boolean;
  resource?: Resource;
  /** The custodian organization (set on create, changed only by $transfer-custodian). */
  custodianOrg?: string | null;
  /** Written-by: the organization that wrote this version. */
  authorOrg?: string | null;
}

/**
 * A proposed change of one resource (docs/architecture.md, Write policies): the stored version
 * (`before`, with its content and custodian; undefined for a create or an update-as-create) and
 * the proposed body (`after`; undefined for a delete).
 */
export interface WriteChange {
  mode: 'create' | 'update' | 'delete';
  resourceType: string;
  id: string;
  before?: StoredState;
  after?: Resource;
}

/** A policy's answer. The reason is carried by the audit record (never PHI: ids and codes only). */
export interface WriteVerdict {
  permit: boolean;
  reason: string;
}

/** The deciding policy and its reason, as the audit record carries it (`write-policy: name: reason`). */
export interface WriteDecision extends WriteVerdict {
  policy: string;
}

/** The phases of a write at which listeners run (write-events.ts). */
export type WritePhase = 'validate' | 'pre-commit' | 'post-commit';

/** The default policy's name: the custodian organization writes (plus admins for their types). */
export const CUSTODIAN_POLICY = 'custodian-organization';

/** The default policy's reason: who may write and why (ids only). */
export function defaultDecision(principal: Principal, existed: boolean, permit: boolean): WriteDecision {
  const decision = (reason: string): WriteDecision => ({ policy: CUSTODIAN_POLICY, permit, reason });
  if (!permit) return decision('not the custodian organization, or hidden or missing');
  if (principal.kind === 'system') return decision(`system context ${principal.clientId ?? ''}`.trim());
  if (principal.role === 'admin') return decision('admin role, for the types it may write');
  if (!existed) return decision(`create: Organization/${principal.organization ?? '-'} becomes the custodian`);
  return decision(`Organization/${principal.organization ?? '-'} is the custodian`);
}
