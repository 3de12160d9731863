import type { EntityManager } from 'typeorm';
import type { AccessContext } from '../pipeline/access-context';

/**
 * Makes creates by conditional criteria of one resource type take turns until the transaction
 * ends. Two criteria of different wording can match the same resource, so no lock keyed by their
 * text can make them see each other; what they share is the type. The lock is taken only when the
 * criteria matched nothing (the write is about to create), and the caller matches again once it
 * holds it: each statement of a READ COMMITTED transaction sees what committed before it, so a
 * create that finished while this one waited is found and updated or answered instead of
 * duplicated (docs/architecture.md, "Conditional writes").
 */
export async function lockConditionalCreates(tx: EntityManager, resourceType: string): Promise<void> {
  await tx.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`conditional-create:${resourceType}`]);
}

/**
 * Finds the ids of current resources matching search criteria, for conditional create, update,
 * delete and conditional references. The search module provides the full implementation; this
 * abstract class keeps storage and transactions independent of it.
 */
export abstract class ResourceMatcher {
  abstract matchIds(ctx: AccessContext, resourceType: string, criteria: string, tx: EntityManager): Promise<string[]>;

  /**
   * Matches for a conditional write that may create: when nothing matches, waits for the other
   * conditional creates of the type to commit (lockConditionalCreates) and matches again.
   */
  async matchIdsForCreate(ctx: AccessContext, resourceType: string, criteria: string, tx: EntityManager): Promise<string[]> {
    const ids = await this.matchIds(ctx, resourceType, criteria, tx);
    if (ids.length) return ids;
    await lockConditionalCreates(tx, resourceType);
    return this.matchIds(ctx, resourceType, criteria, tx);
  }
}
