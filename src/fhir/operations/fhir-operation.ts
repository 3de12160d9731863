import type { OperationDefinition } from '@medplum/fhirtypes';
import type { StorageSession } from '../storage/storage-session';
import type { AccessContext } from '../pipeline/access-context';
import type { InteractionResult, OperationInteraction } from '../pipeline/interaction';
import type { HieRole } from '../pipeline/principal';
import type { OperationDeclaration, OperationLevel } from '../pipeline/operation-declaration';
import { OperationInput, parseOperationInput } from './operation-parameters';

export type { OperationDeclaration, OperationLevel } from '../pipeline/operation-declaration';

/**
 * A FHIR operation (`$name`, operations.html) the server executes. Operations register with the
 * OperationRegistry, keyed by (name, level, resource type); the pipeline authorizes and audits them
 * like any interaction. Its input parameters are checked against its own `definition`
 * (`parseOperationInput`, called by the registry before `execute`, so no operation can skip it),
 * which the server serves at `OperationDefinition/{id}`.
 */
export abstract class FhirOperation implements OperationDeclaration {
  /** Name without `$` (the definition's `code`). */
  abstract readonly name: string;
  /** Its OperationDefinition (fhir-profiles/operation-*.json): parameters, levels, canonical URL. */
  abstract readonly definition: OperationDefinition;
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

  /**
   * The invocation's input checked against `definition`: an undeclared name, a wrong type or
   * cardinality is a 400 before `execute` runs. An operation whose body need not be a Parameters
   * (`$validate`) overrides it.
   */
  input(interaction: OperationInteraction): OperationInput {
    return parseOperationInput(this.definition, interaction);
  }

  /**
   * `session`: the interaction's unit of work (its transaction when `transaction` is `interaction`);
   * `input`: what `input()` returned for this invocation.
   */
  abstract execute(ctx: AccessContext, interaction: OperationInteraction, session: StorageSession, input: OperationInput): Promise<InteractionResult>;
}
