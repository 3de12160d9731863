import type { StorageSession } from '../storage/storage-session';
import type { AccessContext } from '../pipeline/access-context';
import type { InteractionResult, OperationInteraction } from '../pipeline/interaction';
import type { HieRole } from '../pipeline/principal';

export type OperationLevel = 'system' | 'type' | 'instance';

/** What the authorization stage reads to decide who may invoke an operation (GUIDE §1). */
export interface OperationDeclaration {
  readonly name: string;
  readonly levels: readonly OperationLevel[];
  readonly resourceTypes?: readonly string[];
  /** Roles that may invoke it; nobody else may. */
  readonly roles: readonly HieRole[];
  /**
   * SMART scopes the client must also hold, as `type.verb` (e.g. `Patient.r`; `*` for any type, or
   * `{type}` for the type it is invoked on). Empty: the role alone decides.
   */
  readonly scopes: readonly string[];
  readonly affectsState: boolean;
  /** Runs asynchronously (kick-off + status polling) rather than answering in the request. */
  readonly async: boolean;
  /**
   * `interaction`: runs in the pipeline's transaction like a write; `own`: manages its own
   * transactions (long-running batch work such as $reindex, under a system context).
   */
  readonly transaction: 'interaction' | 'own';
  /** Invocable on a version (`Type/id/_history/vid/$name`) as well as on the instance. */
  readonly versionLevel?: boolean;
  /** BALP action of its audit record when not `E` (execute): `R` for reads, `U` for changes. */
  readonly auditAction?: 'R' | 'U';
}

/**
 * A FHIR operation (`$name`, operations.html) the server executes. Operations register with the
 * OperationRegistry; the pipeline authorizes and audits them like any interaction.
 */
export abstract class FhirOperation implements OperationDeclaration {
  /** Name without `$`. */
  abstract readonly name: string;
  /** Canonical URL of its OperationDefinition (listed in the CapabilityStatement). */
  abstract readonly definition: string;
  abstract readonly levels: readonly OperationLevel[];
  /** Resource types it applies to at type/instance level; undefined for every type. */
  readonly resourceTypes?: readonly string[];
  /** Operations that change state may not be invoked with GET (operations.html#request). */
  abstract readonly affectsState: boolean;
  abstract readonly roles: readonly HieRole[];
  readonly scopes: readonly string[] = [];
  readonly async: boolean = false;
  readonly transaction: 'interaction' | 'own' = 'interaction';
  readonly versionLevel: boolean = false;
  readonly auditAction?: 'R' | 'U';

  /** `session`: the interaction's unit of work (its transaction when `transaction` is `interaction`). */
  abstract execute(ctx: AccessContext, interaction: OperationInteraction, session: StorageSession): Promise<InteractionResult>;
}
