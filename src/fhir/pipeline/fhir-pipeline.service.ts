import { Injectable } from '@nestjs/common';
import { AuditRecord, AuditRecordInput, auditRecord } from '../../audit/audit-record';
import { RequestContext } from '../../common/request-context';
import { databaseFailure } from '../../common/database-error';
import { FhirError } from '../../common/fhir-error';
import { OperationRegistry } from '../operations/operation.registry';
import { ResourceRepository } from '../storage/resource.repository';
import { StorageSession, StorageSessions } from '../storage/storage-session';
import { BundleProcessor } from '../transaction/bundle.processor';
import { AccessContext, AccessLookups, InteractionWrites } from './access-context';
import { buildInteraction, Interaction, InteractionResult, QueryParams } from './interaction';
import { InteractionExecutor } from './interaction.executor';
import { AuditStage, AuthorizationStage, ConsentStage } from './pipeline.stages';
import type { Principal } from './principal';
import { defaultDecision } from './write-decision';
import type { WriteDecision } from './write-decision';
import { WriteEvents } from './write-events';
import { WritePolicies } from './write-policy';
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
    private readonly writePolicies: WritePolicies,
    private readonly writeEvents: WriteEvents,
  ) {}

  async handle(principal: Principal, interaction: Interaction, origin: RequestOrigin = {}): Promise<InteractionResult> {
    if (interaction.kind === 'batch' || interaction.kind === 'transaction') return this.handleBundle(principal, interaction, origin);
    const started = performance.now();
    const transactional = this.isTransactional(interaction);
    let ctx: AccessContext | undefined;
    try {
      return await this.sessions.run({ transactional, signal: origin.signal }, async (session) => {
        ctx = await this.accessFor(principal, interaction);
        const result = await this.executor.execute(ctx, interaction, session);
        const explanation = await this.consent.explain(principal, interaction, result.judged, session.tx);
        // A write's record commits in the write's transaction; a read's is written before the response.
        await this.audit.record(this.record(principal, interaction, origin, started, ctx, result, undefined, explanation), transactional ? session : undefined);
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
    const runEntry = async (entry: Interaction, index: number, session: StorageSession, inTransaction: boolean): Promise<InteractionResult> => {
      const entryStarted = performance.now();
      let ctx: AccessContext | undefined;
      try {
        ctx = await this.accessFor(principal, entry);
        const result = await this.executor.execute(ctx, entry, session);
        const explanation = await this.consent.explain(principal, entry, result.judged, session.tx);
        // Always the entry's session: a batch entry's write commits its record too (a read's session has no transaction).
        await this.audit.record({ ...this.record(principal, entry, origin, entryStarted, ctx, result, undefined, explanation), bundleEntry: index }, session);
        return result;
      } catch (err) {
        // In a transaction the failure rolls everything back; the record is written after the rollback.
        if (!inTransaction) await this.audit.record({ ...this.record(principal, entry, origin, entryStarted, ctx, undefined, err), bundleEntry: index });
        else (err as { auditEntry?: { interaction: Interaction; index: number; started: number } }).auditEntry ??= { interaction: entry, index, started: entryStarted };
        throw err;
      }
    };
    try {
      this.authorization.authorize(principal, bundle);
      const result = await this.bundles.process(bundle, {
        transaction: (work) => this.sessions.run({ transactional: true, signal: origin.signal }, work),
        runInTransaction: (entry, index, session) => runEntry(entry, index, session, true),
        runAlone: (entry, index) =>
          this.sessions.run({ transactional: this.isTransactional(entry), signal: origin.signal }, (session) => runEntry(entry, index, session, false)),
        lookup: (kind, resourceType, query) => this.lookups(principal).lookup(kind, resourceType, query),
      });
      await this.audit.record(this.record(principal, bundle, origin, started, undefined, { ...result, touched: [] }));
      return result;
    } catch (caught) {
      const mapped = databaseFailure(caught);
      const err = mapped ? Object.assign(mapped, { auditEntry: (caught as { auditEntry?: unknown }).auditEntry }) : caught;
      const failed = (err as { auditEntry?: { interaction: Interaction; index: number; started: number } }).auditEntry;
      if (failed) {
        await this.audit.record({ ...this.record(principal, failed.interaction, origin, failed.started, undefined, undefined, err), bundleEntry: failed.index });
      }
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
      read: [...decision.fragments, ...scope],
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
      query: SEARCH_KINDS.has(interaction.kind) ? queryStringOf(interaction.query) : undefined,
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
 * Internal work that must see across organizations (reindex, identity matching, statistics,
 * subscription matching) asks for a named system context here: minted by the pipeline's issuer,
 * audited, and never a raw database connection.
 */
@Injectable()
export class SystemAccess {
  constructor(
    private readonly audit: AuditStage,
    private readonly writePolicies: WritePolicies,
    private readonly writeEvents: WriteEvents,
  ) {}

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
    // Its writes (if any) fire the same write events as a client's: a Consent is materialized whoever writes it.
    return issueAccessContext({ principal, read: [], write: [], lookups: NO_LOOKUPS, system: name, writes: interactionWrites(this.writePolicies, this.writeEvents, principal) });
  }
}
