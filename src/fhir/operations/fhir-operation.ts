import type { EntityManager } from 'typeorm';
import type { AccessContext } from '../pipeline/access-context';
import type { Interaction, InteractionResult } from '../pipeline/interaction';

export type OperationLevel = 'system' | 'type' | 'instance';

/**
 * A FHIR operation (`$name`, operations.html) the server executes. Operations register with the
 * OperationRegistry; the pipeline authorizes and audits them like any interaction.
 */
export abstract class FhirOperation {
  /** Name without `$`. */
  abstract readonly name: string;
  /** Canonical URL of its OperationDefinition (listed in the CapabilityStatement). */
  abstract readonly definition: string;
  abstract readonly levels: readonly OperationLevel[];
  /** Resource types it applies to at type/instance level; undefined for every type. */
  readonly resourceTypes?: readonly string[];
  /** Operations that change state may not be invoked with GET (operations.html#request). */
  abstract readonly affectsState: boolean;

  abstract execute(ctx: AccessContext, interaction: Interaction, tx?: EntityManager): Promise<InteractionResult>;
}
