import { Inject, Injectable } from '@nestjs/common';
import { AuditRecord, AuditRecordInput, auditRecord } from '../fhir/pipeline/audit-record';
import { RequestContext } from '../common/request-context';
import { APP_CONFIG, AppConfig } from '../config/app.config';
import { databaseFailure } from '../common/database-error';
import { FhirError } from '../common/fhir-error';
import { OperationRegistry } from '../fhir/operations/operation.registry';
import { ResourceRepository } from '../fhir/storage/resource.repository';
import { StorageSession, StorageSessions } from '../fhir/storage/storage-session';
import { BundleProcessor } from './bundle.processor';
import { AccessContext, AccessLookups } from '../fhir/pipeline/access-context';
import { Interaction, InteractionResult, QueryParams } from '../fhir/pipeline/interaction';
import { InteractionExecutor } from './interaction.executor';
import { AuditStage, AuthorizationStage, ConsentStage } from '../fhir/pipeline/pipeline.stages';
import type { Principal } from '../fhir/pipeline/principal';
import { retryWriteConflicts } from './write-conflict-retry';
import type { WriteDecision } from '../fhir/pipeline/write-decision';
import { WriteEvents } from '../fhir/pipeline/write-events';
import { WritePolicies } from '../fhir/pipeline/write-policy';
import { ResourceTypeHandlers } from '../fhir/pipeline/resource-type-handler';
import { writeRuleFragments } from './write-rule';
import { basisOf, clientLookups, interactionWrites, issueAccessContext, NO_LOOKUPS } from './access-issuer';

const WRITE_KINDS = new Set(['create', 'update', 'patch', 'delete']);

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
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly writePolicies: WritePolicies,
    private readonly writeEvents: WriteEvents,
    private readonly typeHandlers: ResourceTypeHandlers,
  ) {}

  async handle(principal: Principal, interaction: Interaction, origin: RequestOrigin = {}): Promise<InteractionResult> {
    if (interaction.kind === 'batch' || interaction.kind === 'transaction') return this.handleBundle(principal, interaction, origin);
    const started = performance.now();
    const transactional = this.isTransactional(interaction);
    let ctx: AccessContext | undefined;
    try {
      return await this.rerunOnConflict(transactional, () =>
        this.sessions.run({ transactional, signal: origin.signal }, async (session) => {
          ctx = await this.accessFor(principal, interaction);
          const result = await this.executor.execute(ctx, interaction, session);
          const explanation = await this.consent.explain(principal, interaction, result.judged, session.tx);
          // A write's record commits in the write's transaction; a read's is written before the response.
          await this.audit.record(this.record(principal, interaction, origin, started, ctx, result, undefined, explanation), transactional ? session : undefined);
          return result;
        }),
      );
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
      await this.sessions.run({ transactional: false }, async ({ tx }) => {
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
    const runEntry = async (run: EntryRun, session: StorageSession): Promise<InteractionResult> => {
      run.ctx = await this.accessFor(principal, run.interaction);
      const result = await this.executor.execute(run.ctx, run.interaction, session);
      const explanation = await this.consent.explain(principal, run.interaction, result.judged, session.tx);
      // Always the entry's session: a batch entry's write commits its record too (a read's session has no transaction).
      await this.audit.record({ ...this.record(principal, run.interaction, origin, run.started, run.ctx, result, undefined, explanation), bundleEntry: run.index }, session);
      return result;
    };
    // A refused or failed entry is recorded like the same request sent alone (its target and that
    // target's patients), once its session is over: the target's lookup takes a connection of its own.
    const recordFailedEntry = async (run: EntryRun, err: unknown): Promise<void> => {
      const record = { ...this.record(principal, run.interaction, origin, run.started, run.ctx, undefined, err), bundleEntry: run.index };
      await this.audit.record(await this.withRequestedTarget(record, run.interaction, principal));
    };
    // In a transaction the failure rolls everything back; the failing entry (of the last run) is recorded after the rollback.
    let failedInTransaction: EntryRun | undefined;
    /** A batch entry is an interaction of its own: rerun alone on a write conflict, its failure recorded once. */
    const runAlone = async (entry: Interaction, index: number): Promise<InteractionResult> => {
      const run: EntryRun = { interaction: entry, index, started: performance.now() };
      const transactional = this.isTransactional(entry);
      try {
        return await this.rerunOnConflict(transactional, () => this.sessions.run({ transactional, signal: origin.signal }, (session) => runEntry(run, session)));
      } catch (err) {
        await recordFailedEntry(run, err);
        throw err;
      }
    };
    // A transaction Bundle is rerun whole on a write conflict: each run plans it afresh from the body as sent
    // (the processor puts back the references it rewrote in place when a run fails).
    const processBundle = (): Promise<InteractionResult> => {
      failedInTransaction = undefined;
      return this.bundles.process(bundle, {
        transaction: (work) => this.sessions.run({ transactional: true, signal: origin.signal }, work),
        runInTransaction: async (entry, index, session) => {
          const run: EntryRun = { interaction: entry, index, started: performance.now() };
          try {
            return await runEntry(run, session);
          } catch (err) {
            failedInTransaction ??= run;
            throw err;
          }
        },
        runAlone,
        lookup: (kind, resourceType, query) => this.lookupsOf(principal).lookup(kind, resourceType, query),
      });
    };
    try {
      this.authorization.authorize(principal, bundle);
      const result = await this.rerunOnConflict(bundle.kind === 'transaction', processBundle);
      await this.audit.record(this.record(principal, bundle, origin, started, undefined, { ...result, touched: [] }));
      return result;
    } catch (caught) {
      const err = databaseFailure(caught) ?? caught;
      if (failedInTransaction) await recordFailedEntry(failedInTransaction, err);
      await this.audit.record(this.record(principal, bundle, origin, started, undefined, undefined, err));
      throw err;
    }
  }

  /**
   * A write PostgreSQL rolled back for a deadlock or serialization failure (e.g. two transaction
   * Bundles taking conditional-create turns of two types in opposite order) is rerun whole, audit
   * records included, at most FHIR_WRITE_CONFLICT_RETRIES times; then 503 transient. Reads are never
   * rolled back so.
   */
  private rerunOnConflict<T>(transactional: boolean, work: () => Promise<T>): Promise<T> {
    return transactional ? retryWriteConflicts(this.config.writeConflictRetries, work) : work();
  }

  private isTransactional(interaction: Interaction): boolean {
    if (WRITE_KINDS.has(interaction.kind)) return true;
    if (interaction.kind !== 'operation') return false;
    const operation = this.operations.find(interaction);
    // An asynchronous operation's kick-off stores its job (and enqueues it) in one transaction.
    return operation?.transaction === 'interaction' && (operation.affectsState || operation.async);
  }

  /**
   * Authorization (scopes), consent and the write rule for one interaction, as one AccessContext.
   * `writes`: false for a look-up's context (its searches, and a transaction's conditional-reference
   * candidates written under a savepoint and rolled back): no module policy, no write event.
   */
  private async accessFor(principal: Principal, interaction: Interaction, writes = true): Promise<AccessContext> {
    if (interaction.kind === 'operation') this.operations.resolve(interaction);
    const scope = this.authorization.authorize(principal, interaction);
    const decision = await this.consent.decide(principal, interaction);
    return issueAccessContext({
      principal,
      // Types a module handles (AuditEvent) are read by that module's rule in place of consent.
      read: [...this.typeHandlers.withTypeRules(principal, interaction, decision.fragments), ...scope],
      write: writeRuleFragments(principal),
      writes: writes ? interactionWrites(this.writePolicies, this.writeEvents, principal, interaction) : undefined,
      lookups: this.lookupsOf(principal),
    });
  }

  /** A look-up's context has no module policy and fires no write event (`writes` false). */
  private lookupsOf(principal: Principal): AccessLookups {
    return clientLookups(this.authorization, principal, (lookup) => this.accessFor(principal, lookup, false));
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
      query: SEARCH_KINDS.has(interaction.kind) ? queryStringOf(interaction.query) : result?.auditQuery,
      outcome: failure ? 'failure' : 'success',
      status: result?.status ?? error?.status ?? 500,
      failureCode: failure ? (error?.issues[0]?.code ?? 'exception') : undefined,
      entities: failure ? [] : (result?.touched ?? []),
      extraPatients: interaction.compartment ? [interaction.compartment.id] : [],
      accessBasis: ctx ? [...withExplanation(basisOf(ctx), explanation), ...writePolicyLine(result, failure)] : [],
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

/**
 * The write policy that decided a write (permit, or the refusal), as one access-basis line of the
 * AuditEvent (`write-policy: {name}: {reason}`, docs/audit.md).
 */
function writePolicyLine(result: InteractionResult | undefined, failure: unknown): string[] {
  const decision = result?.writeDecision ?? (failure as { writeDecision?: WriteDecision } | undefined)?.writeDecision;
  return decision ? [`write-policy: ${decision.policy}: ${decision.reason}`] : [];
}

