import type { EntityManager } from 'typeorm';

/**
 * Work a transaction must do right before it commits (the audit records of its writes), keyed by
 * the session's EntityManager. Run by StorageSessions just before COMMIT; a failure rolls the
 * transaction back. Deferring to that point keeps locks taken there (the audit chain head) held
 * only for the commit itself, not for the rest of a long transaction Bundle.
 */
const pending = new WeakMap<EntityManager, Array<() => Promise<void>>>();

export function beforeCommit(tx: EntityManager, work: () => Promise<void>): void {
  const list = pending.get(tx);
  if (list) list.push(work);
  else pending.set(tx, [work]);
}

export async function runBeforeCommit(tx: EntityManager): Promise<void> {
  const list = pending.get(tx);
  pending.delete(tx);
  for (const work of list ?? []) await work();
}

/** Drops what a rolled-back transaction had queued. */
export function discardBeforeCommit(tx: EntityManager): void {
  pending.delete(tx);
  committed.delete(tx);
}

/**
 * Work that needs the transaction's effects visible to other connections (chaining its audit
 * records): run by StorageSessions right after COMMIT, before the response. It cannot undo the
 * commit, so it must not throw for the request's sake.
 */
const committed = new WeakMap<EntityManager, Array<() => Promise<void>>>();

export function afterCommit(tx: EntityManager, work: () => Promise<void>): void {
  const list = committed.get(tx);
  if (list) list.push(work);
  else committed.set(tx, [work]);
}

export async function runAfterCommit(tx: EntityManager): Promise<void> {
  const list = committed.get(tx);
  committed.delete(tx);
  for (const work of list ?? []) await work();
}
