import { Inject, Injectable } from '@nestjs/common';
import { AuditRecord, AuditRecordInput, auditRecord } from '../../audit/audit-record';
import { RequestContext } from '../../common/request-context';
import { APP_CONFIG, AppConfig } from '../../config/app.config';
import { databaseFailure } from '../../common/database-error';
import { FhirError } from '../../common/fhir-error';
import { cloneJson } from '../../common/fhir-json';
import { OperationRegistry } from '../operations/operation.registry';
import { ResourceRepository } from '../storage/resource.repository';
import { StorageSession, StorageSessions } from '../storage/storage-session';
import { BundleProcessor } from '../transaction/bundle.processor';
import { AccessContext, AccessLookups, InteractionWrites } from './access-context';
import { buildInteraction, Interaction, InteractionResult, QueryParams } from './interaction';
import { InteractionExecutor } from './interaction.executor';
import { AuditStage, AuthorizationStage, ConsentStage } from './pipeline.stages';
import type { Principal } from './principal';
import { retryWriteConflicts } from './write-conflict-retry';
import { defaultDecision } from './write-decision';
import type { WriteDecision } from './write-decision';
import { WriteEvents } from './write-events';
import { WritePolicies } from './write-policy';
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
    // (the processor rewrites references in place; cloneJson keeps raw decimals).
    const processBundle = (): Promise<InteractionResult> => {
      failedInTransaction = undefined;
      return this.bundles.process(bundle.kind === 'transaction' ? { ...bundle, body: cloneJson(bundle.body) } : bundle, {
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
        lookup: (kind, resourceType, query) => this.lookups(principal).lookup(kind, resourceType, query),
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
        this.accessFor(principal, buildInteraction(kind, { resourceType, id: '', query, path: '' }), false),
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

function basisOf(ctx: AccessContext): string[] {
  const fragments = ctx.readFragments;
  return fragments.length ? fragments.map((f) => `${f.basis}: ${f.description}`) : ['policy: unrestricted by scope or consent'];
}

/**
 * The write policies and listeners of one interaction (or of a system context's work, with no
 * interaction). Post-commit listeners are queued on the transaction and run right after COMMIT,
 * so they never run for a write that rolled back.
 */
function interactionWrites(policies: WritePolicies, events: WriteEvents, principal: Principal, interaction?: Interaction): InteractionWrites {
  return {
    judges: (resourceType) => policies.judges(resourceType),
    decide: (change, defaultPermits, existed) =>
      interaction ? policies.decide({ ...change, principal, interaction }, defaultPermits, existed) : defaultDecision(principal, existed, defaultPermits),
    wantsBeforeContent: (resourceType) => events.wantsBeforeContent(resourceType),
    fire: async (phase, change, tx) => {
      if (!events.listening(phase, change.resourceType)) return;
      const session = StorageSession.of(tx);
      // Writes happen only in the pipeline's sessions; a write outside one could not honour post-commit.
      if (!session) throw new Error('A write outside a storage session');
      const event = { ...change, principal, interaction, tx, session };
      if (phase === 'post-commit') session.afterCommit(() => events.fire(phase, event));
      else await events.fire(phase, event);
    },
  };
}

/**
 * The unrestricted system contexts, each for one kind of internal work (docs/architecture.md,
 * "System contexts"); nothing else reads across organizations without a bound. Each is minted once
 * per job (never per row) and audited by name.
 */
export const UNRESTRICTED_SYSTEM_CONTEXTS = {
  /** `$reindex`: re-extracts index rows of every resource (content is read, nothing is disclosed). */
  reindex: 'reindex',
  /** `npm run reindex`: the same from the command line. */
  'reindex-cli': 'reindex-cli',
  /** Identity matching: the demographics of Patients of every organization, for scoring only. */
  'identity-matching': 'identity-matching',
  /** Aggregate statistics: counts over every organization's data, never rows (small cells suppressed). */
  'aggregate-statistics': 'aggregate-statistics',
  /** `$transfer-custodian` (admins): looks up the new custodian Organization and moves the custodian columns. */
  'custodian-transfer': 'custodian-transfer',
} as const;
export type UnrestrictedSystemContext = keyof typeof UNRESTRICTED_SYSTEM_CONTEXTS;

/** Purposes of use a consent-bounded system context may act for, and the role whose view it takes. */
const PURPOSE_VIEWS: Record<string, Pick<Principal, 'role' | 'clinicalAccess'>> = {
  // A public-health agency's individual-level view: what a client registered with clinical access sees.
  PUBHLTH: { role: 'public-health', clinicalAccess: true },
};

/**
 * Internal work asks for its access here: minted by the pipeline's issuer, audited, and never a raw
 * database connection. `mintFor(purpose)` is the way internal work reads resource content: the
 * consent stage's predicate for that purpose under the region's policy, exactly as a client with
 * that purpose and `system/*.rs` would see. `mint(name)` is for the short list above only.
 */
@Injectable()
export class SystemAccess {
  constructor(
    private readonly audit: AuditStage,
    private readonly consent: ConsentStage,
    private readonly writePolicies: WritePolicies,
    private readonly writeEvents: WriteEvents,
    private readonly authorization: AuthorizationStage,
    private readonly typeHandlers: ResourceTypeHandlers,
  ) {}

  /**
   * A read-only context for background work a client asked for (a Bulk Data export): the stored
   * `principal` is authorized and consent-checked for `interaction` exactly as the same request
   * would be now (scopes, role, consent, per-type rules), so the job sees what the client would
   * see by search, no more. Throws the 401/403 the request would get. Audited once per mint as
   * `on-behalf-of:{work}` with the client as the agent and the access basis of the context.
   */
  async mintAs(principal: Principal, interaction: Interaction, work: string): Promise<AccessContext> {
    if (principal.kind !== 'client') throw new Error('Only a client principal can be acted for');
    const ctx = await this.readOnlyContextFor(principal, interaction);
    await this.recordMint(`on-behalf-of:${work}`, principal, principal, basisOf(ctx));
    return ctx;
  }

  private async readOnlyContextFor(principal: Principal, interaction: Interaction): Promise<AccessContext> {
    const scope = this.authorization.authorize(principal, interaction);
    const decision = await this.consent.decide(principal, interaction);
    const lookups: AccessLookups = {
      mayRead: (resourceType) => {
        try {
          this.authorization.authorize(principal, buildInteraction('search-type', { resourceType, path: '' }));
          return true;
        } catch {
          return false;
        }
      },
      lookup: (kind, resourceType, query = {}) => this.readOnlyContextFor(principal, buildInteraction(kind, { resourceType, id: '', query, path: '' })),
    };
    return issueAccessContext({ principal, read: [...this.typeHandlers.withTypeRules(principal, interaction, decision.fragments), ...scope], write: [], lookups });
  }

  async mint(name: UnrestrictedSystemContext, onBehalfOf?: Principal): Promise<AccessContext> {
    if (!Object.hasOwn(UNRESTRICTED_SYSTEM_CONTEXTS, name)) throw new Error(`${String(name)} is not a named unrestricted system context`);
    const principal: Principal = { kind: 'system', clientId: `system:${name}`, scopes: [], ...(onBehalfOf ? { organization: onBehalfOf.organization } : {}) };
    await this.recordMint(name, principal, onBehalfOf, [`system: ${name}`]);
    // Its writes (if any) fire the same write events as a client's: a Consent is materialized whoever writes it.
    return issueAccessContext({ principal, read: [], write: [], lookups: NO_LOOKUPS, system: name, writes: interactionWrites(this.writePolicies, this.writeEvents, principal) });
  }

  /**
   * A read-only context bounded by consent for `purpose` (e.g. PUBHLTH): the fragments the consent
   * stage gives a client of that purpose's role with unrestricted read and search scopes and no
   * organization of its own (so no "own data" bypass). It is not a system context in the storage
   * sense (`ctx.system` unset): cross-organization maintenance (reindex) refuses it.
   */
  async mintFor(purpose: string, onBehalfOf?: Principal): Promise<AccessContext> {
    const view = Object.hasOwn(PURPOSE_VIEWS, purpose) ? PURPOSE_VIEWS[purpose] : undefined;
    if (!view) throw new Error(`No consent-bounded system view is defined for purpose ${purpose}`);
    const name = `purpose-${purpose}`;
    const principal: Principal = { kind: 'system', clientId: `system:${name}`, scopes: ['system/*.rs'], purposeOfUse: purpose, ...view };
    const search = buildInteraction('search-system', { path: '' });
    const decision = await this.consent.decide(principal, search);
    await this.recordMint(name, principal, onBehalfOf, decision.fragments.map((f) => `${f.basis}: ${f.description}`));
    return issueAccessContext({ principal, read: decision.fragments, write: [], lookups: NO_LOOKUPS });
  }

  private async recordMint(name: string, principal: Principal, onBehalfOf: Principal | undefined, basis: string[]): Promise<void> {
    await this.audit.record(
      auditRecord({
        kind: 'system-access',
        subtype: name,
        requestId: RequestContext.requestId(),
        principal: onBehalfOf ?? principal,
        outcome: 'success',
        status: 200,
        system: name,
        accessBasis: basis,
        durationMs: 0,
      }),
    );
  }
}
