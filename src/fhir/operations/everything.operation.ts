import { Injectable, OnModuleInit } from '@nestjs/common';
import type { Bundle } from '@medplum/fhirtypes';
import type { StorageSession } from '../storage/storage-session';
import { FhirError } from '../../common/fhir-error';
import { parseFhirDateRange } from '../../common/fhir-date';
import { FhirDefinitions } from '../definitions/fhir-definitions';
import type { AccessContext } from '../pipeline/access-context';
import type { Interaction, InteractionResult, QueryParams } from '../pipeline/interaction';
import { ResourceRepository } from '../storage/resource.repository';
import { SearchService } from '../search/search.service';
import { FhirOperation } from './fhir-operation';
import { OperationRegistry } from './operation.registry';

const PARAMS = new Set(['_since', '_type', '_count', '_cursor', '_total', '_format', '_pretty']);
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
  readonly definition = 'http://hie.example.org/fhir/OperationDefinition/patient-everything';
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

  async execute(ctx: AccessContext, i: Interaction, { tx }: StorageSession): Promise<InteractionResult> {
    if (i.body !== undefined && !(typeof i.body === 'object' && i.body && Object.keys(i.body).length === 0)) {
      throw FhirError.badRequest('$everything takes its parameters in the query string (_since, _type, _count)');
    }
    for (const name of Object.keys(i.query)) {
      if (!PARAMS.has(name)) throw FhirError.badRequest(`Unknown $everything parameter '${name.slice(0, 64)}'`, [name.slice(0, 64)]);
    }
    // A Patient the requester may not see is answered as one that does not exist.
    const patient = await this.repository.readCurrent(ctx, 'Patient', i.id!, tx);
    if (!patient || patient.deleted) throw FhirError.notFound(`Patient/${i.id} is not known`);

    const all = ['Patient', ...FhirDefinitions.get().patientCompartmentTypes()];
    const asked = values(i.query._type).flatMap((v) => v.split(',')).map((t) => t.trim()).filter(Boolean);
    for (const t of asked) if (!all.includes(t)) throw FhirError.badRequest(`'${t.slice(0, 64)}' in _type is not a type of the Patient compartment`, ['_type']);
    const types = (asked.length ? asked : all).filter((t) => ctx.mayRead(t));
    const since = single(i.query, '_since');
    if (since !== undefined && (!/^\d{4}-\d{2}-\d{2}T/.test(since) || !parseFhirDateRange(since))) {
      throw FhirError.badRequest(`_since must be an instant (e.g. 2024-01-01T00:00:00Z), got '${since.slice(0, 40)}'`, ['_since']);
    }
    const query: QueryParams = {
      _type: types.join(','),
      _count: single(i.query, '_count') ?? String(DEFAULT_COUNT),
      ...(since !== undefined ? { _lastUpdated: `ge${since}` } : {}),
      ...(i.query._cursor !== undefined ? { _cursor: i.query._cursor } : {}),
      ...(i.query._total !== undefined ? { _total: i.query._total } : {}),
    };
    const result = await this.search.search(ctx, { kind: 'search-system', query, compartment: { type: 'Patient', id: i.id! }, path: i.path }, tx);
    const bundle = result.resource as Bundle;
    // Paging links continue this operation with the caller's own parameters, not the inner search's.
    bundle.link = bundle.link?.map((l) => ({ ...l, url: this.continuation(l.url, i) }));
    return result;
  }

  private continuation(url: string | undefined, i: Interaction): string {
    const inner = new URL(url ?? '', 'http://x');
    const q = new URLSearchParams();
    for (const name of ['_since', '_type', '_count', '_total']) for (const v of values(i.query[name])) q.append(name, v);
    const cursor = inner.searchParams.get('_cursor');
    if (cursor) q.set('_cursor', cursor);
    const base = (url ?? '').split('?')[0];
    return q.size ? `${base}?${q}` : base;
  }
}

function values(v: string | string[] | undefined): string[] {
  return Array.isArray(v) ? v : v !== undefined ? [v] : [];
}

function single(query: QueryParams, name: string): string | undefined {
  const v = values(query[name]);
  if (v.length > 1) throw FhirError.badRequest(`${name} may be given once`, [name]);
  return v[0];
}
