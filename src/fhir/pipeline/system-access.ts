import type { AccessContext } from './access-context';
import type { Interaction } from './interaction';
import type { Principal } from './principal';

/**
 * The unrestricted system contexts, each for one kind of internal work (docs/architecture.md,
 * "System contexts"); nothing else reads across organizations without a bound. Each is minted once
 * per job (never per row) and audited by name.
 */
export const UNRESTRICTED_SYSTEM_CONTEXTS = {
  /** `$reindex`: re-extracts index rows of every resource (content is read, nothing is disclosed). */
  reindex: 'reindex',
  /** `npm run reindex`: the same from the command line. */
  'reindex-cli': 'reindex-cli',
  /** Identity matching: the demographics of Patients of every organization, for scoring only. */
  'identity-matching': 'identity-matching',
  /** Aggregate statistics: counts over every organization's data, never rows (small cells suppressed). */
  'aggregate-statistics': 'aggregate-statistics',
  /** `$transfer-custodian` (admins): looks up the new custodian Organization and moves the custodian columns. */
  'custodian-transfer': 'custodian-transfer',
  /**
   * Reportable-condition case reports (public health, docs/public-health.md): writes each report
   * Bundle and Task as the agency and, where mandated reporting overrides opt-out (the default),
   * reads the report's Patient, trigger, Encounter and Organization by id.
   */
  'case-reporting': 'case-reporting',
  /** Rest-hook delivery: sets a Subscription's status (`error` after failures, `active` again), content unchanged otherwise. */
  'subscription-status': 'subscription-status',
} as const;
export type UnrestrictedSystemContext = keyof typeof UNRESTRICTED_SYSTEM_CONTEXTS;

export interface MintOptions {
  /**
   * For a mint inside a request (an operation's): its audit record is made durable in one commit
   * with the request's own record, before the response (AuditStage.recordWithRequest), instead of
   * a commit of its own before the context is returned.
   */
  auditWithRequest?: boolean;
}

/**
 * How internal work asks for its access (GUIDE §1b): the pipeline implements it (src/pipeline),
 * operations and modules inject this abstract class, so nothing below the pipeline imports it.
 * Every mint is audited by name.
 */
export abstract class SystemAccess {
  /**
   * A read-only context for background work a client asked for (a Bulk Data export): the stored
   * `principal` is authorized and consent-checked for `interaction` exactly as the same request
   * would be now. Throws the 401/403 the request would get. Audited as `on-behalf-of:{work}`.
   */
  abstract mintAs(principal: Principal, interaction: Interaction, work: string): Promise<AccessContext>;
  /** One of the named unrestricted contexts above, minted once per job (never per row). */
  abstract mint(name: UnrestrictedSystemContext, onBehalfOf?: Principal, options?: MintOptions): Promise<AccessContext>;
  /** A read-only context bounded by consent for `purpose` (e.g. PUBHLTH) under the region's policy. */
  abstract mintFor(purpose: string, onBehalfOf?: Principal): Promise<AccessContext>;
}
