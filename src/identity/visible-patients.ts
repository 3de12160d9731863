import type { Bundle, BundleEntry } from '@medplum/fhirtypes';
import type { EntityManager } from 'typeorm';
import type { AccessContext } from '../fhir/pipeline/access-context';
import { buildInteraction } from '../fhir/pipeline/interaction';
import type { InteractionResult } from '../fhir/pipeline/interaction';
import { SEARCH_LIMITS } from '../fhir/search/search-limits';
import type { SearchService } from '../fhir/search/search.service';

/**
 * The Patients among `ids` the caller may read: `_id` searches under its own AccessContext (100 ids
 * each, the search's OR limit), so consent decides in SQL and a hidden Patient is never returned,
 * counted or audited. With the audit entities of those returned.
 */
export async function visiblePatients(
  search: SearchService,
  ctx: AccessContext,
  ids: readonly string[],
  path: string,
  tx: EntityManager,
): Promise<{ entries: BundleEntry[]; touched: NonNullable<InteractionResult['touched']> }> {
  const entries: BundleEntry[] = [];
  const touched: NonNullable<InteractionResult['touched']> = [];
  for (let at = 0; at < ids.length; at += SEARCH_LIMITS.orValues) {
    const chunk = ids.slice(at, at + SEARCH_LIMITS.orValues);
    const interaction = buildInteraction('search-type', { resourceType: 'Patient', path, query: { _id: chunk.join(','), _count: String(chunk.length) } });
    const result = await search.search(ctx, interaction, tx);
    entries.push(...((result.resource as Bundle).entry ?? []).filter((e) => e.search?.mode === 'match' && e.resource?.resourceType === 'Patient'));
    touched.push(...(result.touched ?? []));
  }
  return { entries, touched };
}
