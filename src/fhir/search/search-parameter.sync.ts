import { Injectable, Logger, OnModuleDestroy, OnModuleInit, Optional } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { SearchParameter } from '@medplum/fhirtypes';
import { Client } from 'pg';
import type { DataSource, EntityManager, EntitySubscriberInterface, QueryRunner, TransactionCommitEvent, TransactionRollbackEvent } from 'typeorm';
import { FhirError } from '../../common/fhir-error';
import { CapabilityStatementService } from '../capability/capability-statement.service';
import {
  buildCustomSearchParams,
  loadShippedSearchParameters,
  loadStoredSearchParameters,
  searchParameterProblem,
} from './custom-search-parameters';
import { setCustomSearchParams } from './search-parameter.registry';

/** Channel the `search_parameter_changed` trigger (migration 1732400000400) notifies on commit. */
export const SEARCH_PARAMETER_CHANNEL = 'search_parameter_changed';
const RECONNECT_MS = [1000, 2000, 5000, 10000, 30000];

/**
 * Keeps this node's search parameter registry equal to what the database says, so several nodes
 * agree: all custom parameters are loaded at start, and every node LISTENs on a channel that a
 * trigger NOTIFYs in the transaction that writes a SearchParameter (delivered on commit, never for
 * a rollback). The writing node also reloads right after its own commit, before it answers, so its
 * client can use the parameter at once. After a lost listen connection it reconnects and reloads
 * everything, so no change is missed.
 */
@Injectable()
export class SearchParameterSync implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger('SearchParameters');
  private readonly shipped: SearchParameter[] = loadShippedSearchParameters();
  private readonly changedIn = new WeakSet<QueryRunner>();
  private listener?: Client;
  private stopped = false;
  private reconnectAttempt = 0;
  private reconnectTimer?: NodeJS.Timeout;
  private loading?: Promise<void>;
  private queued?: Promise<void>;
  private readonly subscriber: EntitySubscriberInterface = {
    afterTransactionCommit: (e: TransactionCommitEvent) => this.afterCommit(e.queryRunner),
    afterTransactionRollback: (e: TransactionRollbackEvent) => {
      if (!e.queryRunner.isTransactionActive) this.changedIn.delete(e.queryRunner);
    },
  };

  constructor(
    @InjectDataSource() private readonly db: DataSource,
    @Optional() private readonly capabilities?: CapabilityStatementService,
  ) {}

  async onModuleInit(): Promise<void> {
    this.db.subscribers.push(this.subscriber);
    await this.listen();
    await this.reload();
  }

  async onModuleDestroy(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    const i = this.db.subscribers.indexOf(this.subscriber);
    if (i >= 0) this.db.subscribers.splice(i, 1);
    await this.listener?.end().catch(() => undefined);
    await this.loading?.catch(() => undefined);
  }

  /**
   * Called in the transaction that writes a SearchParameter: refuses one this server cannot apply
   * (the write rolls back, nothing is stored) and remembers to reload after commit. Writes of
   * SearchParameters serialize on an advisory lock, so two clashing codes cannot both pass.
   */
  async checkWrite(tx: EntityManager, id: string, sp: SearchParameter | undefined): Promise<void> {
    if (tx.queryRunner) this.changedIn.add(tx.queryRunner);
    if (!sp || sp.status !== 'active') return;
    await tx.query(`SELECT pg_advisory_xact_lock(hashtext('SearchParameter'))`);
    const stored = (await loadStoredSearchParameters(tx)).filter((o) => o.id !== id);
    const problem = searchParameterProblem(sp, [...this.shipped, ...stored]);
    if (problem) throw problem;
  }

  /** Reloads the custom layer; concurrent callers share a load that started after they called. */
  reload(): Promise<void> {
    if (!this.loading) {
      this.loading = this.load().finally(() => {
        this.loading = undefined;
      });
      return this.loading;
    }
    // A load in flight may have read before the caller's commit: queue exactly one more after it.
    this.queued ??= this.loading.then(() => {
      this.queued = undefined;
      return this.reload();
    });
    return this.queued;
  }

  private async load(): Promise<void> {
    try {
      const stored = await loadStoredSearchParameters(this.db);
      setCustomSearchParams(
        buildCustomSearchParams(this.shipped, stored, (sp, problem: FhirError) =>
          this.logger.warn(`SearchParameter ${sp.id ?? sp.url ?? sp.code} is not applied: ${problem.message}`),
        ),
      );
      this.capabilities?.invalidate();
    } catch (err) {
      // Keep the previous layer; the next notification or reconnect retries.
      this.logger.error(`Loading search parameters failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  private async afterCommit(queryRunner: QueryRunner): Promise<void> {
    if (queryRunner.isTransactionActive || !this.changedIn.has(queryRunner)) return;
    this.changedIn.delete(queryRunner);
    await this.reload();
  }

  private async listen(): Promise<void> {
    const url = (this.db.options as { url?: string }).url;
    const client = new Client({ connectionString: url, application_name: 'fhir-hie-listen' });
    client.on('notification', (msg) => {
      if (msg.channel === SEARCH_PARAMETER_CHANNEL) void this.reload();
    });
    client.on('error', (err) => {
      this.logger.warn(`Search parameter listen connection failed: ${err.message}`);
      this.onListenerLost(client);
    });
    client.on('end', () => this.onListenerLost(client));
    try {
      await client.connect();
      await client.query(`LISTEN ${SEARCH_PARAMETER_CHANNEL}`);
    } catch (err) {
      await client.end().catch(() => undefined);
      throw err;
    }
    this.listener = client;
    this.reconnectAttempt = 0;
  }

  private onListenerLost(client: Client): void {
    if (this.stopped || client !== this.listener) return;
    this.listener = undefined;
    client.end().catch(() => undefined);
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.reconnectTimer) return;
    const delay = RECONNECT_MS[Math.min(this.reconnectAttempt++, RECONNECT_MS.length - 1)];
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.stopped) return;
      // Changes committed while nobody listened: reload everything once listening again.
      this.listen()
        .then(() => this.reload())
        .catch((err: unknown) => {
          this.logger.warn(`Search parameter listen reconnect failed: ${err instanceof Error ? err.message : String(err)}`);
          this.scheduleReconnect();
        });
    }, delay);
    this.reconnectTimer.unref();
  }
}
