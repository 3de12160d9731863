import { Injectable } from '@nestjs/common';
import type { Interaction } from './interaction';
import type { Principal } from './principal';
import { defaultDecision } from './write-decision';
import type { WriteChange, WriteDecision, WriteVerdict } from './write-decision';

/** A proposed change as a write policy sees it: who writes, in which interaction, before and after. */
export interface WriteProposal extends WriteChange {
  principal: Principal;
  interaction: Interaction;
}

/**
 * A rule on who may change resources of some types, registered by a module (referrals: a Task's
 * owner may make the owner's transitions) with `WritePolicies.register` in its `onModuleInit`.
 * `decide` answers permit, deny, or undefined (no opinion). It runs under the write's row lock
 * and must not do I/O: everything it may judge on is in the proposal.
 */
export interface WritePolicy {
  /** Stable name, recorded in the audit record of every write it decides. */
  readonly name: string;
  readonly resourceTypes: readonly string[];
  decide(proposal: WriteProposal): WriteVerdict | undefined;
}

/**
 * The registered write policies. The default policy is not here: it is judged in SQL with the row
 * lock (`write-rule.ts`, race-free), and its outcome is passed to `decide` as `defaultPermits`.
 *
 * Combination: a registered policy's deny wins (whatever the default says); else the default's
 * permit; else a registered policy's permit; else the one 403. Registered policies are asked only
 * about rows the requester may read (a hidden row is never described to them), and about creates.
 */
@Injectable()
export class WritePolicies {
  private readonly byType = new Map<string, WritePolicy[]>();
  private readonly names = new Set<string>();

  register(policy: WritePolicy): void {
    if (this.names.has(policy.name)) throw new Error(`Write policy '${policy.name}' is registered twice`);
    this.names.add(policy.name);
    for (const type of policy.resourceTypes) this.byType.set(type, [...(this.byType.get(type) ?? []), policy]);
  }

  /** Whether any module policy judges this type (only then is the stored content read for it). */
  judges(resourceType: string): boolean {
    return this.byType.has(resourceType);
  }

  /**
   * The decision on one write. `defaultPermits`: the default policy's SQL verdict under the row
   * lock; `existed`: a row (live or deleted) was there. Without registered policies for the type,
   * the default decides alone.
   */
  decide(proposal: WriteProposal, defaultPermits: boolean, existed: boolean): WriteDecision {
    let permitted: WriteDecision | undefined;
    for (const policy of this.byType.get(proposal.resourceType) ?? []) {
      const verdict = policy.decide(proposal);
      if (!verdict) continue;
      if (!verdict.permit) return { policy: policy.name, ...verdict };
      permitted ??= { policy: policy.name, ...verdict };
    }
    if (defaultPermits) return defaultDecision(proposal.principal, existed, true);
    return permitted ?? defaultDecision(proposal.principal, existed, false);
  }
}

