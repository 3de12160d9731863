import type { Interaction } from '../fhir/pipeline/interaction';

/** Interactions whose statements judge rows of their own resource type only (no chain, include or `_has`). */
const ONE_TYPE_KINDS = new Set(['read', 'vread', 'history-instance', 'history-type', 'search-type', 'create', 'update', 'patch', 'delete']);

/**
 * Whether any statement of `interaction` can judge rows of `types` (a read restriction's types:
 * a referral's Task and ServiceRequest). A restriction narrows access, so it may be left out of
 * the predicate only where no row of its types can be reached: an interaction on another type
 * whose query follows no reference (no chain `a.b`, no `_has`, no `_include`/`_revinclude`).
 * Everything else (system and compartment level, operations, Bundles, any chain or include)
 * renders it. Leaving it out of `Observation?subject=…&code=…` spares every such search the
 * planning of the restriction's sub-selects (docs/performance.md).
 */
export function interactionMayReach(interaction: Interaction, types: readonly string[]): boolean {
  const type = interaction.resourceType;
  if (!type || types.includes(type) || !ONE_TYPE_KINDS.has(interaction.kind)) return true;
  return Object.keys(interaction.query ?? {}).some((name) => name.includes('.') || name.startsWith('_has') || name.startsWith('_include') || name.startsWith('_revinclude'));
}
