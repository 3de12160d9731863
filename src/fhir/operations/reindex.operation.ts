import { Injectable, Logger, OnModuleInit } from '@nestjs/common';
import type { Parameters, ParametersParameter } from '@medplum/fhirtypes';
import { FhirError } from '../../common/fhir-error';
import { FhirDefinitions } from '../definitions/fhir-definitions';
import type { AccessContext } from '../pipeline/access-context';
import type { InteractionResult, OperationInteraction } from '../pipeline/interaction';
import { SearchParameterSync } from '../search/search-parameter.sync';
import { DEFAULT_REINDEX_BATCH, ReindexPosition, SearchReindexer } from '../search/search-reindexer';
import { SystemAccess } from '../pipeline/fhir-pipeline.service';
import { FhirOperation } from './fhir-operation';
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
  readonly definition = 'http://hie.example.org/fhir/OperationDefinition/reindex';
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

  async execute(ctx: AccessContext, i: OperationInteraction): Promise<InteractionResult> {
    const input = operationInput(i);
    const types = i.resourceType ? [i.resourceType] : typesOf(input.get('type') ?? []);
    if (i.resourceType && input.has('type')) throw FhirError.badRequest('type is only allowed on the system-level $reindex', ['type']);
    const maxResources = positiveInteger(input.get('maxResources'), 'maxResources', REINDEX_DEFAULT_MAX, REINDEX_MAX);
    const after = cursorOf(input.get('cursor'), types);
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

/** Input parameters from the query string and, for POST, a Parameters body (operations.html#request). */
function operationInput(i: OperationInteraction): Map<string, string[]> {
  const input = new Map<string, string[]>();
  const add = (name: string, value: string): void => {
    input.set(name, [...(input.get(name) ?? []), value]);
  };
  for (const [name, v] of Object.entries(i.query)) {
    for (const one of Array.isArray(v) ? v : v !== undefined ? [v] : []) add(name, one);
  }
  const body = i.body as { resourceType?: unknown; parameter?: ParametersParameter[] } | undefined;
  if (body && typeof body === 'object' && Object.keys(body).length) {
    if (body.resourceType !== 'Parameters') throw FhirError.badRequest('The body of an operation must be a Parameters resource', ['resourceType']);
    for (const p of body.parameter ?? []) {
      const value = p.valueInteger ?? p.valuePositiveInt ?? p.valueString ?? p.valueCode;
      if (typeof p.name !== 'string' || value === undefined) {
        throw FhirError.badRequest(`Parameter '${String(p.name).slice(0, 64)}' needs a valueInteger, valueString or valueCode`, ['Parameters.parameter']);
      }
      add(p.name, String(value));
    }
  }
  const known = new Set(['type', 'maxResources', 'cursor', '_format', '_pretty']);
  for (const name of input.keys()) {
    if (!known.has(name)) throw FhirError.badRequest(`Unknown parameter '${name.slice(0, 64)}' for $reindex`, [name.slice(0, 64)]);
  }
  return input;
}

function typesOf(values: string[]): string[] {
  const types = values.flatMap((v) => v.split(',')).map((t) => t.trim());
  const bad = types.find((t) => !FhirDefinitions.get().isStorable(t));
  if (bad !== undefined) throw FhirError.badRequest(`'${bad.slice(0, 64)}' is not a storable resource type`, ['type']);
  return [...new Set(types)].sort();
}

function positiveInteger(values: string[] | undefined, name: string, def: number, max: number): number {
  if (!values?.length) return def;
  if (values.length > 1 || !/^[1-9]\d{0,8}$/.test(values[0])) throw FhirError.badRequest(`${name} must be one positive integer`, [name]);
  const n = Number(values[0]);
  if (n > max) throw FhirError.badRequest(`${name} may be at most ${max}`, [name]);
  return n;
}

function cursorOf(values: string[] | undefined, types: string[]): ReindexPosition | undefined {
  if (!values?.length) return undefined;
  const m = values.length === 1 ? CURSOR_RE.exec(values[0]) : null;
  if (!m || (types.length && !types.includes(m[1]))) {
    throw FhirError.badRequest('cursor must be the value a previous $reindex answered for the same request', ['cursor']);
  }
  return { resourceType: m[1], id: m[2] };
}
