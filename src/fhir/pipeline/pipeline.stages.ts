import type { AccessFragment } from './access-predicate';
import type { EntityManager } from 'typeorm';
import type { AuditRecord } from './audit-record';
import type { Interaction } from './interaction';
import type { Principal } from './principal';
import type { AccessAttributes } from '../storage/access-attributes';
import type { StorageSession } from '../storage/storage-session';

/**
 * The pluggable stages of the pipeline (GUIDE §1). Each is an abstract class so Nest can inject
 * the implementation a module provides; the FHIR module binds defaults, capability modules
 * (auth, consent, audit) override them.
 */
export abstract class AuthorizationStage {
  /**
   * Throws a 401/403 FhirError when the principal may not perform the interaction; otherwise
   * returns the fragments (SMART v2 scope queries) that bound which rows it may see, if any.
   */
  abstract authorize(principal: Principal, interaction: Interaction): readonly AccessFragment[];
}

export interface ConsentDecision {
  /** Rows the patients' consents (and the base policy) let this principal see, as typed fragments. */
  fragments: readonly AccessFragment[];
  /** Short description for the audit record (e.g. which Consent applied). */
  basis: string;
}

export abstract class ConsentStage {
  /** The fragments only: no database work, so a read stays one statement. */
  abstract decide(principal: Principal, interaction: Interaction): Promise<ConsentDecision>;

  /**
   * For the audit record of an access by id: what decided it (e.g. which Consent provision), judged
   * on the row the interaction read (`judged`, when it read one) or looked up in `tx` (refusals).
   */
  async explain(_principal: Principal, _interaction: Interaction, _judged: AccessAttributes | undefined, _tx: EntityManager): Promise<string | undefined> {
    return undefined;
  }
}

export abstract class AuditStage {
  /**
   * Must complete (durably, for real audit) before the response body is sent; failure fails the
   * request. `session`: the interaction's unit of work, for a record that must commit with the write.
   */
  abstract record(record: AuditRecord, session?: StorageSession): Promise<void>;

  /**
   * A record of work inside a request whose own record follows (a system-access mint by an
   * operation): made durable together with the request's next record, in the same commit, and that
   * record's `record()` fails if this one could not be written, so no response leaves without it.
   * Records of no request are recorded at once. Default: recorded at once.
   */
  recordWithRequest(record: AuditRecord): Promise<void> {
    return this.record(record);
  }

  /**
   * Records of one piece of background work that are made durable together (a batch of rest-hook
   * deliveries' disclosures): still one record each, with the same content as `record` would store,
   * appended with one statement and one commit where the stage can. Not for records of a request.
   * Default: each recorded at once.
   */
  async recordMany(records: readonly AuditRecord[]): Promise<void> {
    await Promise.all(records.map((r) => this.record(r)));
  }
}
