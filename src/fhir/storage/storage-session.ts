import { Injectable, Logger } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource, EntityManager, QueryRunner } from 'typeorm';
import { discardBeforeCommit, runAfterCommit, runBeforeCommit } from '../../common/before-commit';
import { flushQueuedCreates } from './resource.repository';

export interface StorageSessionOptions {
  /** Writes run in one database transaction, committed only if the whole unit of work succeeds. */
  transactional: boolean;
  /** Aborted when the client goes away: the statement running then is cancelled in PostgreSQL. */
  signal?: AbortSignal;
}

/**
 * The database side of one interaction (GUIDE §1: the pipeline owns the transaction). The pipeline
 * opens a session per interaction (per Bundle for a transaction, per entry for a batch) and hands
 * its `manager` to the executor, storage, search and the audit stage, so a record written by a later
 * stage commits with the write it records. Reads use one pooled connection without BEGIN/COMMIT
 * (one statement, one implicit transaction); writes use one explicit transaction.
 */
@Injectable()
export class StorageSessions {
  private readonly logger = new Logger('StorageSessions');

  constructor(@InjectDataSource() private readonly db: DataSource) {}

  async run<T>(options: StorageSessionOptions, work: (tx: EntityManager) => Promise<T>): Promise<T> {
    if (options.signal?.aborted) throw new Error('The client went away before the interaction started');
    const runner = this.db.createQueryRunner();
    await runner.connect();
    const cancel = (): void => void this.cancel(runner);
    options.signal?.addEventListener('abort', cancel, { once: true });
    try {
      if (!options.transactional) return await work(runner.manager);
      await runner.startTransaction();
      const result = await work(runner.manager);
      // Nothing queued by deferCreates may be left out of the commit.
      await flushQueuedCreates(runner.manager);
      // The audit records of the writes (AuditStage with tx) commit with them.
      await runBeforeCommit(runner.manager);
      await runner.commitTransaction();
      // E.g. chaining the audit records that committed with the write (docs/audit.md).
      await runAfterCommit(runner.manager);
      return result;
    } catch (err) {
      discardBeforeCommit(runner.manager);
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
