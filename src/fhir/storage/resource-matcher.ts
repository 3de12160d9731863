import type { EntityManager } from 'typeorm';
import type { AccessContext } from '../pipeline/access-context';

/**
 * Serializes conditional operations with the same criteria until the transaction ends, so two
 * concurrent conditional creates cannot both see "no match".
 */
export async function lockCriteria(tx: EntityManager, resourceType: string, criteria: string): Promise<void> {
  // NUL cannot be bound as text; the criteria themselves are refused (400) by the matcher next.
  const normalized = [...new URLSearchParams(criteria)].map(([k, v]) => `${k}=${v}`).sort().join('&').replace(/\0/g, '\\0');
  await tx.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`${resourceType}?${normalized}`]);
}

/**
 * Finds the ids of current resources matching search criteria, for conditional create, update,
 * delete and conditional references. The search module provides the full implementation; this
 * abstract class keeps storage and transactions independent of it.
 */
export abstract class ResourceMatcher {
  abstract matchIds(ctx: AccessContext, resourceType: string, criteria: string, tx: EntityManager): Promise<string[]>;
}
