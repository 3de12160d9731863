import type { HieRole } from './principal';

export type OperationLevel = 'system' | 'type' | 'instance';

/**
 * What the authorization stage reads to decide who may invoke an operation (GUIDE §1). Vocabulary
 * beside `Interaction` (which carries the resolved declaration), below the operations that implement it.
 */
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
