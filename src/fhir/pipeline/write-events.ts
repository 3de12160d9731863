import { Injectable, Logger } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import type { StorageSession } from '../storage/storage-session';
import type { Interaction } from './interaction';
import type { Principal } from './principal';
import type { WriteChange, WritePhase } from './write-decision';

export type { WritePhase } from './write-decision';

/**
 * One write as its listeners see it (docs/architecture.md, Write events): who writes, in which
 * interaction (undefined for internal work under a system context), the stored version before
 * (`before`: version, deleted, custodian, written-by; its content only for listeners that ask)
 * and the version written (`after`, with its meta; undefined for a delete), in the write's
 * storage session (`session`, its transaction `tx`). Bulk creates of a transaction Bundle deliver the same data as single creates.
 */
export interface WriteEvent extends WriteChange {
  principal: Principal;
  interaction?: Interaction;
  /** The write's transaction (`session.tx`). After commit (post-commit) it is finished: not for queries. */
  tx: EntityManager;
  /** The unit of work the write belongs to (e.g. `afterCommit` for more work after the commit). */
  session: StorageSession;
}

/**
 * A module's work on writes of some resource types, at one phase:
 * - `validate`: before anything is stored; throwing a FhirError refuses the write (its 4xx).
 * - `pre-commit`: in the write's transaction, after its rows and index rows are written (bulk
 *   creates: when the Bundle's queue is written, so a listener sees every create of the Bundle);
 *   throwing rolls the whole transaction back.
 * - `post-commit`: after the transaction committed (notifications); failures are logged, never
 *   change the response; never runs for a rolled-back write.
 * Listeners of a phase run one after another by `order` (then name). They register with
 * `WriteEvents.register` in their `onModuleInit`.
 */
export interface WriteListener {
  readonly name: string;
  readonly phase: WritePhase;
  readonly order: number;
  /** Types it listens to; undefined: every type. */
  readonly resourceTypes?: readonly string[];
  /** The content of `before` (the write then reads the stored content with its row lock). */
  readonly needsBeforeContent?: boolean;
  handle(event: WriteEvent): Promise<void>;
}

/** The write listeners of every module, by phase in their declared order. */
@Injectable()
export class WriteEvents {
  private readonly logger = new Logger('WriteEvents');
  private readonly listeners: WriteListener[] = [];

  register(listener: WriteListener): void {
    if (this.listeners.some((l) => l.name === listener.name)) throw new Error(`Write listener '${listener.name}' is registered twice`);
    this.listeners.push(listener);
    this.listeners.sort((a, b) => a.order - b.order || a.name.localeCompare(b.name));
  }

  /** Whether any listener of the phase listens to the type (no event is built otherwise). */
  listening(phase: WritePhase, resourceType: string): boolean {
    return this.listeners.some((l) => l.phase === phase && listens(l, resourceType));
  }

  wantsBeforeContent(resourceType: string): boolean {
    return this.listeners.some((l) => l.needsBeforeContent && listens(l, resourceType));
  }

  async fire(phase: WritePhase, event: WriteEvent): Promise<void> {
    for (const listener of this.listeners) {
      if (listener.phase !== phase || !listens(listener, event.resourceType)) continue;
      // The stored content was read for another listener: this one did not ask for it.
      const seen = event.before?.resource && !listener.needsBeforeContent ? { ...event, before: { ...event.before, resource: undefined } } : event;
      if (phase !== 'post-commit') {
        await listener.handle(seen);
        continue;
      }
      try {
        await listener.handle(seen);
      } catch (err) {
        // Committed already: the response stands. Ids and the error class only (no PHI).
        this.logger.warn(`post-commit listener ${listener.name} failed for ${event.resourceType}/${event.id}: ${(err as Error)?.name ?? 'error'}`);
      }
    }
  }
}

function listens(listener: WriteListener, resourceType: string): boolean {
  return !listener.resourceTypes || listener.resourceTypes.includes(resourceType);
}
