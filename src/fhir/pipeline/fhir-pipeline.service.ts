import { Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { AuditRecord, AuditRecordInput, auditRecord } from '../../audit/audit-record';
import { RequestContext } from '../../common/request-context';
import { databaseFailure } from '../../common/database-error';
import { FhirError } from '../../common/fhir-error';
import { OperationRegistry } from '../operations/operation.registry';
import { ResourceRepository } from '../storage/resource.repository';
import { StorageSessions } from '../storage/storage-session';
import { BundleProcessor } from '../transaction/bundle.processor';
import { AccessContext, AccessLookups } from './access-context';
import { buildInteraction, Interaction, InteractionResult, QueryParams } from './interaction';
import { InteractionExecutor } from './interaction.executor';
import { AuditStage, AuthorizationStage, ConsentStage } from './pipeline.stages';
import type { Principal } from './principal';
import { ResourceTypeHandlers } from './resource-type-handler';
import { writeRuleFragments } from './write-rule';

// The pipeline is the only holder of the AccessContext issuer: storage cannot be reached around it.
const issueAccessContext = AccessContext.claimIssuer();

const WRITE_KINDS = new Set(['create', 'update', 'patch', 'delete']);

const NO_LOOKUPS: AccessLookups = {
  mayRead: () => true,
  lookup: () => Promise.reject(new Error('A system context makes no lookups on behalf of a client')),
};
/** Reads the compartments of a refused request's target for its audit record (part of auditing itself). */
const AUDIT_SUBJECT_CONTEXT = issueAccessContext({
  principal: { kind: 'system', clientId: 'system:audit-subject', scopes: [] },
  read: [],
  write: [],
  lookups: NO_LOOKUPS,
  system: 'audit-subject',
});

/** How the request reached the server, for the audit record and cancellation. */
export interface RequestOrigin {
  /** Aborted when the client goes away: the running statement is cancelled. */
  signal?: AbortSignal;
  /** Network address of the client. */
  address?: string;
}

/** One Bundle entry on its way through the pipeline (its record is written from this). */
interface EntryRun {
  interaction: Interaction;
  index: number;
  started: number;
  ctx?: AccessContext;
}

/**
 * The single request pipeline (GUIDE §1): authorize -> consent -> execute -> audit, inside one
 * storage session the pipeline opens (one transaction per write interaction, per transaction
 * Bundle, per batch entry). REST calls, batch entries and operations all come through here.
 */
@Injectable()
export class FhirPipeline {
  constructor(
    private readonly authorization: AuthorizationStage,
    private readonly consent: ConsentStage,
    private readonly executor: InteractionExecutor,
    private readonly audit: AuditStage,
    private readonly bundles: BundleProcessor,
    private readonly sessions: StorageSessions,
    private readonly operations: OperationRegistry,
    private readonly repository: ResourceRepository,
    private readonly typeHandlers: ResourceTypeHandlers,
  ) {}

  async handle(principal: Principal, interaction: Interaction, origin: RequestOrigin = {}): Promise<InteractionResult> {
    if (interaction.kind === 'batch' || interaction.kind === 'transaction') return this.handleBundle(principal, interaction, origin);
    const started = performance.now();
    const transactional = this.isTransactional(interaction);
    let ctx: AccessContext | undefined;
    try {
      return await this.sessions.run({ transactional, signal: origin.signal }, async (tx) => {
        ctx = await this.accessFor(principal, interaction);
        const result = await this.executor.execute(ctx, interaction, tx);
        const explanation = await this.consent.explain(principal, interaction, result.judged, tx);
        // A write's record commits in the write's transaction; a read's is written before the response.
        await this.audit.record(this.record(principal, interaction, origin, started, ctx, result, undefined, explanation), transactional ? tx : undefined);
        return result;
      });
    } catch (err) {
      // A database outage or a cancelled statement is audited (and answered) as 503, not as a 500 bug.
      const failure = databaseFailure(err) ?? err;
      const record = this.record(principal, interaction, origin, started, ctx, undefined, failure);
      await this.audit.record(await this.withRequestedTarget(record, interaction, principal));
      throw failure;
    }
  }

  /**
   * A refused or failed access by id names the resource asked for and whose data it is, so an
   * auditor sees who tried to reach a patient's records (never told to the client).
   */
  private async withRequestedTarget(record: AuditRecord, interaction: Interaction, principal: Principal): Promise<AuditRecord> {
    const { resourceType, id } = interaction;
    if (!resourceType || !id || interaction.kind === 'operation') return record;
    let patients: string[] = [];
    let explanation: string | undefined;
    try {
      await this.sessions.run({ transactional: false }, async (tx) => {
        patients = await this.repository.compartmentsOf(AUDIT_SUBJECT_CONTEXT, resourceType, id, tx);
        explanation = await this.consent.explain(principal, interaction, undefined, tx);
      });
    } catch {
      // The database may be what failed; the record still names the resource.
    }
    if (explanation) record = { ...record, accessBasis: withExplanation(record.accessBasis, explanation) };
    const entity = { reference: `${interaction.resourceType}/${interaction.id}`, versionId: interaction.versionId, patients };
    return { ...record, entities: [entity], patients: [...new Set([...record.patients, ...patients])].sort() };
  }

  /**
   * A Bundle is authorized as a whole, then every entry passes authorization, consent, execution
   * and audit itself (one record per entry, and one for the Bundle).
   */
  private async handleBundle(principal: Principal, bundle: Interaction, origin: RequestOrigin): Promise<InteractionResult> {
    const started = performance.now();
    const runEntry = async (run: EntryRun, tx: EntityManager): Promise<InteractionResult> => {
      run.ctx = await this.accessFor(principal, run.interaction);
      const result = await this.executor.execute(run.ctx, run.interaction, tx);
      const explanation = await this.consent.explain(principal, run.interaction, result.judged, tx);
      // Always the entry's session: a batch entry's write commits its record too (a read's session has no transaction).
      await this.audit.record({ ...this.record(principal, run.interaction, origin, run.started, run.ctx, result, undefined, explanation), bundleEntry: run.index }, tx);
      return result;
    };
    // A refused or failed entry is recorded like the same request sent alone (its target and that
    // target's patients), once its session is over: the target's lookup takes a connection of its own.
    const recordFailedEntry = async (run: EntryRun, err: unknown): Promise<void> => {
      const record = { ...this.record(principal, run.interaction, origin, run.started, run.ctx, undefined, err), bundleEntry: run.index };
      await this.audit.record(await this.withRequestedTarget(record, run.interaction, principal));
    };
    // In a transaction the failure rolls everything back; the failing entry is recorded after the rollback.
    let failedInTransaction: EntryRun | undefined;
    try {
      this.authorization.authorize(principal, bundle);
      const result = await this.bundles.process(bundle, {
        transaction: (work) => this.sessions.run({ transactional: true, signal: origin.signal }, work),
        runInTransaction: async (entry, index, tx) => {
          const run: EntryRun = { interaction: entry, index, started: performance.now() };
          try {
            return await runEntry(run, tx);
          } catch (err) {
            failedInTransaction ??= run;
            throw err;
          }
        },
        runAlone: async (entry, index) => {
          const run: EntryRun = { interaction: entry, index, started: performance.now() };
          try {
            return await this.sessions.run({ transactional: this.isTransactional(entry), signal: origin.signal }, (tx) => runEntry(run, tx));
          } catch (err) {
            await recordFailedEntry(run, err);
            throw err;
          }
        },
        lookup: (kind, resourceType, query) => this.lookups(principal).lookup(kind, resourceType, query),
      });
      await this.audit.record(this.record(principal, bundle, origin, started, undefined, { ...result, touched: [] }));
      return result;
    } catch (caught) {
      const err = databaseFailure(caught) ?? caught;
      if (failedInTransaction) await recordFailedEntry(failedInTransaction, err);
      await this.audit.record(this.record(principal, bundle, origin, started, undefined, undefined, err));
      throw err;
    }
  }

  private isTransactional(interaction: Interaction): boolean {
    if (WRITE_KINDS.has(interaction.kind)) return true;
    if (interaction.kind !== 'operation') return false;
    const operation = this.operations.find(interaction.operation);
    return operation?.transaction === 'interaction' && operation.affectsState;
  }

  /** Authorization (scopes), consent and the write rule for one interaction, as one AccessContext. */
  private async accessFor(principal: Principal, interaction: Interaction): Promise<AccessContext> {
    if (interaction.kind === 'operation') this.operations.resolve(interaction);
    const scope = this.authorization.authorize(principal, interaction);
    const decision = await this.consent.decide(principal, interaction);
    return issueAccessContext({
      principal,
      // Types a module handles (AuditEvent) are read by that module's rule in place of consent.
      read: [...this.typeHandlers.withTypeRules(principal, interaction, decision.fragments), ...scope],
      write: writeRuleFragments(principal),
      lookups: this.lookups(principal),
    });
  }

  private lookups(principal: Principal): AccessLookups {
    const lookups: AccessLookups = {
      mayRead: (resourceType) => {
        try {
          this.authorization.authorize(principal, buildInteraction('search-type', { resourceType, path: '' }));
          return true;
        } catch {
          return false;
        }
      },
      // The right to read or search a type does not depend on which resource: no id is needed.
      lookup: async (kind, resourceType, query: QueryParams = {}) =>
        this.accessFor(principal, buildInteraction(kind, { resourceType, id: '', query, path: '' })),
    };
    return lookups;
  }

  private record(
    principal: Principal,
    interaction: Interaction,
    origin: RequestOrigin,
    started: number,
    ctx: AccessContext | undefined,
    result?: InteractionResult,
    failure?: unknown,
    explanation?: string,
  ): ReturnType<typeof auditRecord> {
    const error = failure instanceof FhirError ? failure : undefined;
    const input: AuditRecordInput = {
      kind: interaction.kind,
      subtype: interaction.operation,
      requestId: RequestContext.requestId(),
      principal,
      address: origin.address,
      resourceType: interaction.resourceType,
      path: interaction.path,
      query: SEARCH_KINDS.has(interaction.kind) ? queryStringOf(interaction.query) : undefined,
      outcome: failure ? 'failure' : 'success',
      status: result?.status ?? error?.status ?? 500,
      failureCode: failure ? (error?.issues[0]?.code ?? 'exception') : undefined,
      entities: failure ? [] : (result?.touched ?? []),
      extraPatients: interaction.compartment ? [interaction.compartment.id] : [],
      accessBasis: ctx ? withExplanation(basisOf(ctx), explanation) : [],
      durationMs: Math.round(performance.now() - started),
    };
    // An operation that reads or changes resources ($meta, $meta-add) is audited as that action.
    const action = interaction.kind === 'operation' ? interaction.operationDeclaration?.auditAction : undefined;
    return action ? { ...auditRecord(input), action } : auditRecord(input);
  }
}

const SEARCH_KINDS = new Set(['search-type', 'search-system', 'search-compartment']);

/** The search's query for the audit trail's query entity (stored, never logged). */
function queryStringOf(query: QueryParams): string {
  const params = new URLSearchParams();
  for (const [name, v] of Object.entries(query)) for (const one of Array.isArray(v) ? v : v !== undefined ? [v] : []) params.append(name, one);
  return params.toString();
}

/** The consent stage's explanation of an access by id joins its basis line (`consent: …; …`). */
function withExplanation(basis: readonly string[], explanation: string | undefined): string[] {
  if (!explanation) return [...basis];
  return basis.map((line) => (line.startsWith('consent: ') ? `${line}; ${explanation}` : line));
}

function basisOf(ctx: AccessContext): string[] {
  const fragments = ctx.readFragments;
  return fragments.length ? fragments.map((f) => `${f.basis}: ${f.description}`) : ['policy: unrestricted by scope or consent'];
}

/**
 * Internal work that must see across organizations (reindex, identity matching, statistics,
 * subscription matching) asks for a named system context here: minted by the pipeline's issuer,
 * audited, and never a raw database connection.
 */
@Injectable()
export class SystemAccess {
  constructor(private readonly audit: AuditStage) {}

  async mint(name: string, onBehalfOf?: Principal): Promise<AccessContext> {
    const principal: Principal = { kind: 'system', clientId: `system:${name}`, scopes: [], ...(onBehalfOf ? { organization: onBehalfOf.organization } : {}) };
    await this.audit.record(
      auditRecord({
        kind: 'system-access',
        subtype: name,
        requestId: RequestContext.requestId(),
        principal: onBehalfOf ?? principal,
        outcome: 'success',
        status: 200,
        system: name,
        accessBasis: [`system: ${name}`],
        durationMs: 0,
      }),
    );
    return issueAccessContext({ principal, read: [], write: [], lookups: NO_LOOKUPS, system: name });
  }
}
