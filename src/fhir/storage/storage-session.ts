import { Injectable, Logger } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource, EntityManager, QueryRunner } from 'typeorm';
import type { AccessContext } from '../pipeline/access-context';

export interface StorageSessionOptions {
  /** Writes run in one database transaction, committed only if the whole unit of work succeeds. */
  transactional: boolean;
  /** Aborted when the client goes away: the statement running then is cancelled in PostgreSQL. */
  signal?: AbortSignal;
}

/** Creates queued for a bulk write (ResourceRepository.deferCreates): written before anything reads. */
export interface CreateQueue {
  /** Writes what is queued (rows, index rows, their write events). */
  flush(): Promise<void>;
}

/** A row insert that only has to be in the commit (`StorageSession.deferInsert`). */
export interface DeferredInsert {
  /** One INSERT without RETURNING, its parameters numbered from $1 (never `$n` inside a literal). */
  text: string;
  values: unknown[];
  /** The error to report when the statement carrying it fails (the first part's that has one). */
  onError?: (cause: unknown) => Error;
}

/** Several inserts as one statement: each a data-modifying CTE, parameters renumbered in turn. */
export function combinedInsert(inserts: readonly DeferredInsert[]): { text: string; values: unknown[] } {
  if (inserts.length === 1) return { text: inserts[0].text, values: inserts[0].values };
  const values: unknown[] = [];
  const parts = inserts.map((insert, i) => {
    const offset = values.length;
    values.push(...insert.values);
    return `d${i} AS (${insert.text.replace(/\$(\d+)/g, (_, n: string) => `$${Number(n) + offset}`)})`;
  });
  return { text: `WITH ${parts.join(',\n')}\nSELECT 1`, values };
}

/** Where a session sits on its QueryRunner (TypeORM's per-runner `data`), for code handed only the manager. */
const SESSION = Symbol('StorageSession');

/**
 * The unit of work of one interaction (one transaction Bundle, one batch entry): the connection
 * and its transaction, the AccessContext of the interaction running in it, the creates queued
 * for bulk writing, the work to do right before and right after COMMIT, and the audit rows that
 * commit with the writes. Nothing per-transaction lives in module-level maps: it is all here,
 * and it ends with the session. Opened only by StorageSessions (the pipeline's).
 */
export class StorageSession {
  /** The interaction's AccessContext (a Bundle's entries set theirs in turn). */
  access?: AccessContext;
  /** The bulk-create queue, when a transaction Bundle deferred its creates. */
  createQueue?: CreateQueue;
  /** The audit stage's rows of this transaction, appended together right before COMMIT (opaque here). */
  readonly auditRows: unknown[] = [];
  private beforeCommitWork: Array<() => Promise<void>> = [];
  private afterCommitWork: Array<() => Promise<void>> = [];
  private deferredInserts: DeferredInsert[] = [];

  constructor(
    /** The connection's EntityManager: every statement of the unit of work goes through it. */
    readonly tx: EntityManager,
    readonly transactional: boolean,
  ) {
    if (tx.queryRunner) tx.queryRunner.data = { ...tx.queryRunner.data, [SESSION]: this };
  }

  /** The session a manager belongs to (storage code deep in a write is handed the manager). */
  static of(tx: EntityManager): StorageSession | undefined {
    return (tx.queryRunner?.data as Record<symbol, StorageSession | undefined> | undefined)?.[SESSION];
  }

  /**
   * Work right before COMMIT (the audit rows of the writes): a failure rolls the transaction back.
   * Deferring to that point keeps locks taken there (the audit chain head) held only for the commit.
   */
  beforeCommit(work: () => Promise<void>): void {
    this.beforeCommitWork.push(work);
  }

  /**
   * Rows that only have to commit with the unit of work (the audit records of its writes, a
   * module's outbox row): written after the before-commit work, all in one statement, so the
   * modules that add rows to a write cost it one round trip together, not one each. A failure rolls
   * the transaction back as any statement's would. Only in a transaction.
   */
  deferInsert(insert: DeferredInsert): void {
    if (!this.transactional) throw new Error('a deferred insert needs a transaction');
    this.deferredInserts.push(insert);
  }

  /**
   * Work that needs the commit visible to other connections (chaining audit rows, post-commit write
   * listeners), right after COMMIT and before the response. It cannot undo the commit; each piece
   * runs even if an earlier one failed. Never run for a rolled-back transaction.
   */
  afterCommit(work: () => Promise<void>): void {
    this.afterCommitWork.push(work);
  }

  /** Everything that must be in the commit: queued creates (and their events), then the before-commit work. */
  async prepareCommit(): Promise<void> {
    await this.createQueue?.flush();
    const work = this.beforeCommitWork;
    this.beforeCommitWork = [];
    for (const w of work) await w();
    const inserts = this.deferredInserts;
    this.deferredInserts = [];
    if (!inserts.length) return;
    const { text, values } = combinedInsert(inserts);
    try {
      await this.tx.query(text, values);
    } catch (err) {
      const report = inserts.find((i) => i.onError)?.onError;
      throw report ? report(err) : err;
    }
  }

  async committed(): Promise<void> {
    const work = this.afterCommitWork;
    this.afterCommitWork = [];
    let failure: unknown;
    for (const w of work) {
      try {
        await w();
      } catch (err) {
        failure ??= err;
      }
    }
    if (failure) throw failure;
  }

  /** A rolled-back transaction: nothing queued may run. */
  discard(): void {
    this.beforeCommitWork = [];
    this.afterCommitWork = [];
    this.deferredInserts = [];
    this.createQueue = undefined;
    this.auditRows.length = 0;
  }
}

/**
 * Opens the storage sessions of the pipeline (GUIDE §1: the pipeline owns the transaction): one per
 * interaction (per Bundle for a transaction, per entry for a batch), handed to the executor,
 * storage, search and the audit stage, so a record written by a later stage commits with the
 * write it records. Reads use one pooled connection without BEGIN/COMMIT (one statement, one
 * implicit transaction); writes use one explicit transaction.
 */
@Injectable()
export class StorageSessions {
  private readonly logger = new Logger('StorageSessions');

  constructor(@InjectDataSource() private readonly db: DataSource) {}

  async run<T>(options: StorageSessionOptions, work: (session: StorageSession) => Promise<T>): Promise<T> {
    if (options.signal?.aborted) throw new Error('The client went away before the interaction started');
    const runner = this.db.createQueryRunner();
    await runner.connect();
    const cancel = (): void => void this.cancel(runner);
    options.signal?.addEventListener('abort', cancel, { once: true });
    const session = new StorageSession(runner.manager, options.transactional);
    try {
      if (!options.transactional) return await work(session);
      await runner.startTransaction();
      const result = await work(session);
      // Queued creates, then the audit records of the writes (AuditStage with the session) commit with them.
      await session.prepareCommit();
      await runner.commitTransaction();
      // E.g. chaining the audit records that committed with the write (docs/audit.md), post-commit listeners.
      await session.committed();
      return result;
    } catch (err) {
      session.discard();
      if (runner.isTransactionActive) await runner.rollbackTransaction().catch(() => undefined);
      throw err;
    } finally {
      options.signal?.removeEventListener('abort', cancel);
      await runner.release();
    }
  }

  /** Cancels the statement the session's connection is running (from another pooled connection). */
  private async cancel(runner: QueryRunner): Promise<void> {
    const pid = (runner as QueryRunner & { databaseConnection?: { processID?: number } }).databaseConnection?.processID;
    if (!pid || runner.isReleased) return;
    try {
      await this.db.query('SELECT pg_cancel_backend($1)', [pid]);
      this.logger.log(`cancelled the statement of backend ${pid}: the client went away`);
    } catch {
      // The pool may be closing; the statement timeout still bounds the query.
    }
  }
}
