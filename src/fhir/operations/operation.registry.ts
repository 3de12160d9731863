import { Inject, Injectable, OnModuleInit } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '../../config/app.config';
import { ResourceTypeHandlers } from '../pipeline/resource-type-handler';
import type { Bundle, CapabilityStatementRest, OperationDefinition } from '@medplum/fhirtypes';
import type { StorageSession } from '../storage/storage-session';
import { FhirError } from '../../common/fhir-error';
import { CapabilityContributor, CapabilityStatementService } from '../capability/capability-statement.service';
import type { AccessContext } from '../pipeline/access-context';
import type { InteractionResult, OperationInteraction, QueryParams } from '../pipeline/interaction';
import { FhirOperation, OperationLevel } from './fhir-operation';
import { SERVER_CANONICAL_BASE } from './operation-definitions';

/** The canonical URLs of the server's own OperationDefinitions start here; no stored one is searched for them. */
const OWN_DEFINITIONS = `${SERVER_CANONICAL_BASE}/OperationDefinition/`;
/** Query parameters that shape a response and do not select. */
const SHAPING = new Set(['_format', '_pretty', '_summary', '_elements']);

/** Resource type slot of an operation defined for every type. */
const ANY_TYPE = '*';

const keyOf = (name: string, level: OperationLevel, type: string): string => `${name}|${level}|${type}`;

function levelOf(i: OperationInteraction): OperationLevel {
  return i.id !== undefined ? 'instance' : i.resourceType !== undefined ? 'type' : 'system';
}

/**
 * Routes `$operation` interactions to the registered operations, keyed by (name, level, resource
 * type), so one name can mean different operations at different levels or types
 * (`Patient/$everything`, `Encounter/$everything`). A second registration of the same key fails
 * start. Serves the operations' OperationDefinitions and lists them in the CapabilityStatement.
 */
@Injectable()
export class OperationRegistry implements CapabilityContributor, OnModuleInit {
  private readonly operations = new Map<string, FhirOperation>();
  private readonly names = new Set<string>();
  private readonly definitionsById = new Map<string, OperationDefinition>();

  constructor(
    private readonly capabilities: CapabilityStatementService,
    private readonly typeHandlers: ResourceTypeHandlers,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  onModuleInit(): void {
    this.capabilities.register(this);
    // The server's own OperationDefinitions are served from here, not storage; stored ones beside them.
    this.typeHandlers.register({
      resourceType: 'OperationDefinition',
      read: async (_ctx, i) => this.readDefinition(i.id),
      search: async (_ctx, i) => (i.kind === 'search-type' ? this.searchDefinitions(i.query, this.config.fhirBaseUrl) : undefined),
      refuseChange: (i) =>
        i.id !== undefined && this.definition(i.id)
          ? new FhirError(405, 'not-supported', `OperationDefinition/${i.id} is a definition of this server and cannot be changed`, undefined, { Allow: 'GET' })
          : undefined,
    });
  }

  /** Called from each operation's `onModuleInit`: a duplicate or an inconsistent declaration throws, so the app does not start. */
  register(operation: FhirOperation): void {
    assertMatchesDefinition(operation);
    const keys: string[] = [];
    for (const level of operation.levels) {
      for (const type of level === 'system' ? [''] : (operation.resourceTypes ?? [ANY_TYPE])) {
        const clash = this.clash(operation.name, level, type);
        if (clash) {
          throw new Error(
            `Operation $${operation.name} is registered twice at ${level} level${type ? ` for ${type === ANY_TYPE ? 'every type' : type}` : ''}: ` +
              `${clash.constructor.name} and ${operation.constructor.name}`,
          );
        }
        keys.push(keyOf(operation.name, level, type));
      }
    }
    const other = this.definitionsById.get(operation.definition.id as string);
    if (other && other !== operation.definition && other.url !== operation.definition.url) {
      throw new Error(`OperationDefinition/${operation.definition.id} is declared by two operations with different urls`);
    }
    for (const key of keys) this.operations.set(key, operation);
    this.names.add(operation.name);
    this.definitionsById.set(operation.definition.id as string, operation.definition);
    this.capabilities.invalidate();
  }

  /** The operation registered for this key, or one for every type that overlaps it. */
  private clash(name: string, level: OperationLevel, type: string): FhirOperation | undefined {
    if (type !== ANY_TYPE) return this.operations.get(keyOf(name, level, type)) ?? this.operations.get(keyOf(name, level, ANY_TYPE));
    const prefix = keyOf(name, level, '');
    for (const [key, operation] of this.operations) if (key.startsWith(prefix)) return operation;
    return undefined;
  }

  /** The operation an interaction invokes at its level and type, or undefined. */
  find(i: OperationInteraction): FhirOperation | undefined {
    const level = levelOf(i);
    if (level === 'system') return this.operations.get(keyOf(i.operation, level, ''));
    return this.operations.get(keyOf(i.operation, level, i.resourceType!)) ?? this.operations.get(keyOf(i.operation, level, ANY_TYPE));
  }

  /**
   * The operation an interaction invokes, at a level and type it is defined for; otherwise 404
   * `not-supported` (never 403: an operation the server does not have is not a permission question).
   */
  resolve(i: OperationInteraction): FhirOperation {
    const name = i.operation ?? '';
    if (!this.names.has(name)) throw new FhirError(404, 'not-supported', `Operation $${name.slice(0, 64)} is not supported by this server`);
    const operation = this.find(i);
    const level = levelOf(i);
    if (!operation) throw new FhirError(404, 'not-supported', `Operation $${name} is not defined at ${level} level${level === 'system' ? '' : ` for ${i.resourceType}`}`);
    if (i.versionId !== undefined && !operation.versionLevel) {
      throw new FhirError(404, 'not-supported', `Operation $${name} is not defined at version level`);
    }
    i.operationDeclaration = operation;
    return operation;
  }

  execute(ctx: AccessContext, i: OperationInteraction, session: StorageSession): Promise<InteractionResult> {
    const operation = this.resolve(i);
    const name = operation.name;
    if (operation.affectsState && i.method === 'GET') {
      throw new FhirError(405, 'not-supported', `Operation $${name} changes state and must be invoked with POST`, undefined, { Allow: 'POST' });
    }
    return operation.execute(ctx, i, session, operation.input(i));
  }

  /** The server's own OperationDefinitions (served at `OperationDefinition/{id}`), by id. */
  definition(id: string): OperationDefinition | undefined {
    return this.definitionsById.get(id);
  }

  /** The server's own OperationDefinition with this canonical URL. */
  definitionByUrl(url: string): OperationDefinition | undefined {
    return [...this.definitionsById.values()].find((d) => d.url === url);
  }

  /**
   * A read of `OperationDefinition/{id}` the server answers itself: its own definitions are not
   * stored resources (they change with the server's release, `version`), so their ids are reserved
   * and answered here; any other id is a stored OperationDefinition.
   */
  readDefinition(id: string): InteractionResult | undefined {
    const definition = this.definitionsById.get(id);
    return definition && { status: 200, resource: definition, touched: [{ reference: `OperationDefinition/${id}`, patients: [] }] };
  }

  /**
   * `OperationDefinition?url=…` with a URL in the server's namespace (`OWN_DEFINITIONS`): answered
   * from the server's own definitions (0 or 1 match, exact `total`); any other search goes to the
   * stored OperationDefinitions. Only the `url` parameter (plus response shaping) is answered here.
   */
  searchDefinitions(query: QueryParams, baseUrl: string): InteractionResult | undefined {
    const names = Object.keys(query).filter((n) => !SHAPING.has(n));
    const url = query.url;
    if (names.length !== 1 || typeof url !== 'string' || !url.startsWith(OWN_DEFINITIONS)) return undefined;
    const match = this.definitionByUrl(url);
    const bundle: Bundle = {
      resourceType: 'Bundle',
      type: 'searchset',
      total: match ? 1 : 0,
      link: [{ relation: 'self', url: `${baseUrl}/OperationDefinition?url=${encodeURIComponent(url)}` }],
      entry: match ? [{ fullUrl: `${baseUrl}/OperationDefinition/${match.id}`, resource: match, search: { mode: 'match' } }] : [],
    };
    return { status: 200, resource: bundle, touched: match ? [{ reference: `OperationDefinition/${match.id}`, patients: [] }] : [] };
  }

  contribute(rest: CapabilityStatementRest): void {
    const entries = (ops: FhirOperation[]): { name: string; definition: string }[] => {
      const seen = new Set<string>();
      return ops
        .sort((a, b) => a.name.localeCompare(b.name) || (a.definition.url as string).localeCompare(b.definition.url as string))
        .filter((o) => !seen.has(o.definition.url as string) && !!seen.add(o.definition.url as string))
        .map((o) => ({ name: o.name, definition: o.definition.url as string }));
    };
    const all = [...new Set(this.operations.values())];
    const system = entries(all.filter((o) => o.levels.includes('system')));
    if (system.length) rest.operation = [...(rest.operation ?? []), ...system];
    for (const resource of rest.resource ?? []) {
      const ops = entries(
        all.filter((o) => (o.levels.includes('type') || o.levels.includes('instance')) && (!o.resourceTypes || o.resourceTypes.includes(resource.type as string))),
      );
      if (ops.length) resource.operation = [...(resource.operation ?? []), ...ops];
    }
  }
}

/** The declaration and its OperationDefinition say the same (code, levels, types, affectsState). */
function assertMatchesDefinition(operation: FhirOperation): void {
  const d = operation.definition;
  const problems: string[] = [];
  if (d.code !== operation.name) problems.push(`code ${d.code} is not ${operation.name}`);
  for (const level of ['system', 'type', 'instance'] as const) {
    if (!!d[level] !== operation.levels.includes(level)) problems.push(`${level} is ${!!d[level]} in the definition`);
  }
  if (!!d.affectsState !== operation.affectsState) problems.push(`affectsState is ${!!d.affectsState} in the definition`);
  const types: readonly string[] = d.resource ?? [];
  // `Resource` in the definition: any type, which the declaration may narrow.
  if (!types.includes('Resource') && (operation.levels.includes('type') || operation.levels.includes('instance'))) {
    const declared = operation.resourceTypes ?? [];
    if (declared.length !== types.length || declared.some((t) => !types.includes(t))) problems.push(`resource types ${types.join(',')} are not ${declared.join(',') || 'every type'}`);
  }
  if (problems.length) throw new Error(`Operation $${operation.name} does not match its OperationDefinition/${d.id}: ${problems.join('; ')}`);
}
