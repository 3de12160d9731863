import type { Principal } from './principal';

export type AccessContextIssuer = (
  principal: Principal,
  readPredicate?: string,
  params?: unknown[],
  mayRead?: (resourceType: string) => boolean,
) => AccessContext;

let issuerClaimed = false;

/**
 * Proof that the pipeline authorized an interaction, and the restriction storage must apply.
 * Storage and search require one on every call. The constructor is private and the only minting
 * function is handed out once per process, to the pipeline (fhir-pipeline.service.ts), so no other
 * code path can reach storage without passing authorization and consent.
 *
 * `readPredicate` is an SQL predicate over the `resource` row alias `r` with `$n` placeholders
 * numbered from 1 (the search compiler renumbers them); consent narrows it.
 */
export class AccessContext {
  private constructor(
    readonly principal: Principal,
    readonly readPredicate: string,
    readonly readPredicateParams: readonly unknown[],
    /** Whether the principal may read a type at all: bounds _include, chains and _has to what it could search itself. */
    readonly mayRead: (resourceType: string) => boolean,
  ) {}

  static claimIssuer(): AccessContextIssuer {
    if (issuerClaimed) throw new Error('The AccessContext issuer was already claimed by the pipeline');
    issuerClaimed = true;
    return (principal, readPredicate = 'TRUE', params = [], mayRead = () => true) =>
      new AccessContext(principal, readPredicate, params, mayRead);
  }
}
