import type { AccessFragment, AccessRow, SqlBinder } from './access-predicate';
import { renderFragments } from './access-predicate';
import type { Principal } from './principal';
import type { EntityManager } from 'typeorm';
import type { WriteChange, WriteDecision, WritePhase } from './write-decision';
import { defaultDecision } from './write-decision';

/** The write policies and write listeners of an interaction (the pipeline binds its principal and interaction). */
export interface InteractionWrites {
  /** Whether module policies judge this type: only then does storage read the stored content for them. */
  judges(resourceType: string): boolean;
  decide(change: WriteChange, defaultPermits: boolean, existed: boolean): WriteDecision;
  /** Whether a listener wants `before`'s content for this type. */
  wantsBeforeContent(resourceType: string): boolean;
  /** Runs the listeners of a phase (post-commit: queued to run after the commit). */
  fire(phase: WritePhase, change: WriteChange, tx: EntityManager): Promise<void>;
}

/** Lookups an interaction may need besides its own access: each is authorized like a request of its own. */
export interface AccessLookups {
  /** Whether the principal may search a type at all: bounds `_include`, chains and `_has`. */
  mayRead(resourceType: string): boolean;
  /**
   * The context of a search the interaction runs on the principal's behalf (conditional criteria,
   * a transaction's conditional references, `ifNoneExist`, `:in` ValueSets), or of a read (the body a
   * conditional create returns). Throws 403 when the principal holds no such right.
   */
  lookup(kind: 'search-type' | 'read', resourceType: string, query?: Record<string, string | string[] | undefined>): Promise<AccessContext>;
}

export interface AccessGrant {
  principal: Principal;
  /** Rows the principal may read (scope queries, consent, policy). */
  read: readonly AccessFragment[];
  /** Rows the principal may change, on top of `read` (the default write policy: the custodian). */
  write: readonly AccessFragment[];
  /** Module write policies and listeners; without, the default policy decides alone and no listener runs. */
  writes?: InteractionWrites;
  lookups: AccessLookups;
  /** Set for internal work under a system context: its name. */
  system?: string;
}

export type AccessContextIssuer = (grant: AccessGrant) => AccessContext;

let issuerClaimed = false;

/**
 * Proof that the pipeline authorized an interaction, and the restriction storage must apply.
 * Storage and search require one on every read and write. The constructor is private and the only
 * minting function is handed out once per process, to the pipeline (fhir-pipeline.service.ts).
 */
export class AccessContext {
  private constructor(private readonly grant: AccessGrant) {}

  static claimIssuer(): AccessContextIssuer {
    if (issuerClaimed) throw new Error('The AccessContext issuer was already claimed by the pipeline');
    issuerClaimed = true;
    return (grant) => new AccessContext(grant);
  }

  get principal(): Principal {
    return this.grant.principal;
  }

  /** The fragments, for audit (which bases decided). */
  get readFragments(): readonly AccessFragment[] {
    return this.grant.read;
  }

  /** Name of the system context, for internal work that sees across organizations. */
  get system(): string | undefined {
    return this.grant.system;
  }

  /** SQL condition: the row at `alias` may be read. */
  renderRead(alias: string, bind: SqlBinder, row: AccessRow = 'current'): string {
    return renderFragments(this.grant.read, alias, bind, row);
  }

  /** SQL condition: the row at `alias` may be changed (readable AND the write rule). */
  renderWrite(alias: string, bind: SqlBinder): string {
    return renderFragments([...this.grant.read, ...this.grant.write], alias, bind, 'current');
  }

  /** Whether module write policies judge this type (storage then reads `before` for them). */
  judgesWrites(resourceType: string): boolean {
    return this.grant.writes?.judges(resourceType) ?? false;
  }

  /**
   * The decision on one write: `defaultPermits` is the default policy's verdict from the row lock
   * (renderWrite), `existed` whether a row was there. Module policies may widen or narrow it.
   */
  decideWrite(proposal: WriteChange, defaultPermits: boolean, existed: boolean): WriteDecision {
    return this.grant.writes?.decide(proposal, defaultPermits, existed) ?? defaultDecision(this.grant.principal, existed, defaultPermits);
  }

  /** Whether a write listener wants the stored content of `before` for this type. */
  wantsBeforeContent(resourceType: string): boolean {
    return this.grant.writes?.wantsBeforeContent(resourceType) ?? false;
  }

  /** Runs the write listeners of a phase for one change (none without listeners). */
  async fireWrite(phase: WritePhase, change: WriteChange, tx: EntityManager): Promise<void> {
    await this.grant.writes?.fire(phase, change, tx);
  }

  mayRead(resourceType: string): boolean {
    return this.grant.lookups.mayRead(resourceType);
  }

  lookup(kind: 'search-type' | 'read', resourceType: string, query?: Record<string, string | string[] | undefined>): Promise<AccessContext> {
    return this.grant.lookups.lookup(kind, resourceType, query);
  }
}
