import { AccessContext, AccessLookups, InteractionWrites } from '../fhir/pipeline/access-context';
import { buildInteraction, Interaction, InteractionKind, QueryParams } from '../fhir/pipeline/interaction';
import type { AuthorizationStage } from '../fhir/pipeline/pipeline.stages';
import type { Principal } from '../fhir/pipeline/principal';
import { defaultDecision } from '../fhir/pipeline/write-decision';
import { WriteEvents } from '../fhir/pipeline/write-events';
import { WritePolicies } from '../fhir/pipeline/write-policy';
import { StorageSession } from '../fhir/storage/storage-session';

/**
 * The AccessContext issuer, claimed once for the orchestration layer: the pipeline and the system
 * access it implements are the only code that can create an AccessContext, so storage cannot be
 * reached around them (docs/architecture.md). Nothing outside src/pipeline imports this file.
 */
export const issueAccessContext = AccessContext.claimIssuer();

/** Look-ups of a context that acts for no client (system work makes none). */
export const NO_LOOKUPS: AccessLookups = {
  mayRead: () => true,
  lookup: () => Promise.reject(new Error('A system context makes no lookups on behalf of a client')),
};

/**
 * A client's look-ups (its conditional references, its scope queries' searches): may it read a
 * type at all, and the context of a search it makes. The right to read or search a type does not
 * depend on which resource, so no id is needed. `contextFor` builds the context of the look-up.
 */
export function clientLookups(authorization: AuthorizationStage, principal: Principal, contextFor: (interaction: Interaction) => Promise<AccessContext>): AccessLookups {
  return {
    mayRead: (resourceType) => {
      try {
        authorization.authorize(principal, buildInteraction('search-type', { resourceType, path: '' }));
        return true;
      } catch {
        return false;
      }
    },
    lookup: (kind: InteractionKind, resourceType: string, query: QueryParams = {}) => contextFor(buildInteraction(kind, { resourceType, id: '', query, path: '' })),
  };
}

/** The access basis lines of a context, as its audit record carries them. */
export function basisOf(ctx: AccessContext): string[] {
  const fragments = ctx.readFragments;
  return fragments.length ? fragments.map((f) => `${f.basis}: ${f.description}`) : ['policy: unrestricted by scope or consent'];
}

/**
 * The write policies and listeners of one interaction (or of a system context's work, with no
 * interaction). Post-commit listeners are queued on the transaction and run right after COMMIT,
 * so they never run for a write that rolled back.
 */
export function interactionWrites(policies: WritePolicies, events: WriteEvents, principal: Principal, interaction?: Interaction): InteractionWrites {
  return {
    judges: (resourceType) => policies.judges(resourceType),
    decide: (change, defaultPermits, existed) =>
      interaction ? policies.decide({ ...change, principal, interaction }, defaultPermits, existed) : defaultDecision(principal, existed, defaultPermits),
    wantsBeforeContent: (resourceType) => events.wantsBeforeContent(resourceType),
    fire: async (phase, change, tx) => {
      if (!events.listening(phase, change.resourceType)) return;
      const session = StorageSession.of(tx);
      // Writes happen only in the pipeline's sessions; a write outside one could not honour post-commit.
      if (!session) throw new Error('A write outside a storage session');
      const event = { ...change, principal, interaction, tx, session };
      if (phase === 'post-commit') session.afterCommit(() => events.fire(phase, event));
      else await events.fire(phase, event);
    },
  };
}

