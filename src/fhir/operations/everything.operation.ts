import { Injectable, OnModuleInit } from '@nestjs/common';
import type { Bundle } from '@medplum/fhirtypes';
import type { StorageSession } from '../storage/storage-session';
import { FhirError } from '../../common/fhir-error';
import { FhirDefinitions } from '../definitions/fhir-definitions';
import type { AccessContext } from '../pipeline/access-context';
import type { InteractionResult, OperationInteraction, QueryParams } from '../pipeline/interaction';
import { ResourceRepository } from '../storage/resource.repository';
import { SearchService } from '../search/search.service';
import { FhirOperation } from './fhir-operation';
import { shippedOperationDefinition } from './operation-definitions';
import type { OperationInput } from './operation-parameters';
import { OperationRegistry } from './operation.registry';

/** Parameters a paging link carries on (the rest of the definition's are the caller's filters). */
const CONTINUED = ['_since', '_type', '_count', '_total'];
const DEFAULT_COUNT = 50;

/**
 * `Patient/{id}/$everything` (patient-operation-everything): the Patient and every resource of its
 * compartment the requester may see, as one search (the search service's SQL, the interaction's
 * AccessContext: consent-filtered inside the query, so pages are full and `_total` is right),
 * keyset-paged with `_count`, filtered by `_since` (last updated at or after) and `_type`.
 * Audited once, listing the resources returned.
 *
 * Needs an unrestricted read and search scope (`system/*.rs`): a scope query bounds single types,
 * and this search spans them all.
 */
@Injectable()
export class EverythingOperation extends FhirOperation implements OnModuleInit {
  readonly name = 'everything';
  readonly definition = shippedOperationDefinition('patient-everything');
  readonly levels = ['instance'] as const;
  override readonly resourceTypes = ['Patient'];
  readonly affectsState = false;
  readonly roles = ['hospital'] as const;
  override readonly scopes = ['*.r', '*.s'];

  constructor(
    private readonly operations: OperationRegistry,
    private readonly search: SearchService,
    private readonly repository: ResourceRepository,
  ) {
    super();
  }

  onModuleInit(): void {
    this.operations.register(this);
  }

  async execute(ctx: AccessContext, i: OperationInteraction, { tx }: StorageSession, input: OperationInput): Promise<InteractionResult> {
    // A Patient the requester may not see is answered as one that does not exist.
    const patient = await this.repository.readCurrent(ctx, 'Patient', i.id!, tx);
    if (!patient || patient.deleted) throw FhirError.notFound(`Patient/${i.id} is not known`);

    const all = ['Patient', ...FhirDefinitions.get().patientCompartmentTypes()];
    const asked = input.texts('_type').flatMap((v) => v.split(',')).map((t) => t.trim()).filter(Boolean);
    for (const t of asked) if (!all.includes(t)) throw FhirError.badRequest(`'${t.slice(0, 64)}' in _type is not a type of the Patient compartment`, ['_type']);
    const types = (asked.length ? asked : all).filter((t) => ctx.mayRead(t));
    const since = input.text('_since');
    const cursor = input.text('_cursor');
    const total = input.text('_total');
    const query: QueryParams = {
      _type: types.join(','),
      _count: input.text('_count') ?? String(DEFAULT_COUNT),
      ...(since !== undefined ? { _lastUpdated: `ge${since}` } : {}),
      ...(cursor !== undefined ? { _cursor: cursor } : {}),
      ...(total !== undefined ? { _total: total } : {}),
    };
    const result = await this.search.search(ctx, { kind: 'search-system', query, compartment: { type: 'Patient', id: i.id! }, path: i.path }, tx);
    const bundle = result.resource as Bundle;
    // Paging links continue this operation with the caller's own parameters, not the inner search's.
    bundle.link = bundle.link?.map((l) => ({ ...l, url: this.continuation(l.url, input) }));
    return result;
  }

  private continuation(url: string | undefined, input: OperationInput): string {
    const inner = new URL(url ?? '', 'http://x');
    const q = new URLSearchParams();
    for (const name of CONTINUED) for (const v of input.texts(name)) q.append(name, v);
    const cursor = inner.searchParams.get('_cursor');
    if (cursor) q.set('_cursor', cursor);
    const base = (url ?? '').split('?')[0];
    return q.size ? `${base}?${q}` : base;
  }
}
