import { Injectable, Logger, OnModuleInit } from '@nestjs/common';
import type { Parameters, ParametersParameter } from '@medplum/fhirtypes';
import { FhirError } from '../../common/fhir-error';
import { FhirDefinitions } from '../definitions/fhir-definitions';
import type { AccessContext } from '../pipeline/access-context';
import type { StorageSession } from '../storage/storage-session';
import type { InteractionResult, OperationInteraction } from '../pipeline/interaction';
import { SearchParameterSync } from '../search/search-parameter.sync';
import { DEFAULT_REINDEX_BATCH, ReindexPosition, SearchReindexer } from '../search/search-reindexer';
import { SystemAccess } from '../pipeline/system-access';
import { FhirOperation } from './fhir-operation';
import { shippedOperationDefinition } from './operation-definitions';
import type { OperationInput } from './operation-parameters';
import { OperationRegistry } from './operation.registry';

export const REINDEX_DEFAULT_MAX = 10_000;
export const REINDEX_MAX = 100_000;
const CURSOR_RE = /^([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})$/;

/**
 * `$reindex` (admins only, see SmartAuthorization): rebuilds search index rows after a
 * SearchParameter is added or changed, with the same SearchReindexer as `npm run reindex`.
 *
 * `POST /fhir/$reindex` (all types, or `type=A,B`) and `POST /fhir/{Type}/$reindex`. Synchronous and
 * bounded: one call processes at most `maxResources` (default 10,000, at most 100,000) in batches
 * of 500 and answers a Parameters with `processed`, `complete` and, when resources remain, a
 * `cursor` to pass to the next call. The server keeps no job state, so any node can continue.
 */
@Injectable()
export class ReindexOperation extends FhirOperation implements OnModuleInit {
  readonly name = 'reindex';
  readonly definition = shippedOperationDefinition('reindex');
  readonly levels = ['system', 'type'] as const;
  readonly affectsState = true;
  readonly roles = ['admin'] as const;
  /** Batches commit one by one (a cursor continues), so it manages its own transactions. */
  override readonly transaction = 'own' as const;
  private readonly logger = new Logger('Reindex');

  constructor(
    private readonly operations: OperationRegistry,
    private readonly searchParameters: SearchParameterSync,
    private readonly reindexer: SearchReindexer,
    private readonly system: SystemAccess,
  ) {
    super();
  }

  onModuleInit(): void {
    this.operations.register(this);
  }

  async execute(ctx: AccessContext, i: OperationInteraction, _session: StorageSession, input: OperationInput): Promise<InteractionResult> {
    const types = i.resourceType ? [i.resourceType] : typesOf(input.texts('type'));
    if (i.resourceType && input.has('type')) throw FhirError.badRequest('type is only allowed on the system-level $reindex', ['type']);
    const maxResources = input.integer('maxResources') ?? REINDEX_DEFAULT_MAX;
    if (maxResources < 1 || maxResources > REINDEX_MAX) throw FhirError.badRequest(`maxResources must be between 1 and ${REINDEX_MAX}`, ['maxResources']);
    const after = cursorOf(input.text('cursor'), types);
    // Index with the parameters the database holds now, even if this node's notification is still on its way.
    await this.searchParameters.reload();
    const started = Date.now();
    // Rebuilding index rows reads every organization's resources: a named, audited system context.
    const system = await this.system.mint('reindex', ctx.principal);
    const result = await this.reindexer.run(system, {
      types,
      after,
      limit: maxResources,
      batchSize: DEFAULT_REINDEX_BATCH,
      onBatch: ({ processed, last }) => this.logger.log(`$reindex: ${processed} resources rebuilt (at ${last.resourceType})`),
    });
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    this.logger.log(`$reindex: ${result.processed} resources in ${seconds} s${result.next ? ', more remain' : ', complete'}`);
    const parameter: ParametersParameter[] = [
      { name: 'processed', valueInteger: result.processed },
      { name: 'complete', valueBoolean: !result.next },
    ];
    if (result.next) parameter.push({ name: 'cursor', valueString: `${result.next.resourceType}/${result.next.id}` });
    return { status: 200, resource: { resourceType: 'Parameters', parameter } as Parameters };
  }
}

function typesOf(values: string[]): string[] {
  const types = values.flatMap((v) => v.split(',')).map((t) => t.trim());
  const bad = types.find((t) => !FhirDefinitions.get().isStorable(t));
  if (bad !== undefined) throw FhirError.badRequest(`'${bad.slice(0, 64)}' is not a storable resource type`, ['type']);
  return [...new Set(types)].sort();
}

function cursorOf(value: string | undefined, types: string[]): ReindexPosition | undefined {
  if (value === undefined) return undefined;
  const m = CURSOR_RE.exec(value);
  if (!m || (types.length && !types.includes(m[1]))) {
    throw FhirError.badRequest('cursor must be the value a previous $reindex answered for the same request', ['cursor']);
  }
  return { resourceType: m[1], id: m[2] };
}
