import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '../config/app.config';
import type { AuditEventRow } from './audit-event.builder';
import { AuditTrailRepository } from './audit-trail.repository';

/** How often a node chains write records another node left pending (it stopped before chaining them). */
const SWEEP_MS = 5000;
/** The longest a `withNext` row waits for the record it rides with. */
const WITH_NEXT_MAX_MS = 200;

interface Waiting {
  /** Absent for a caller that only needs the pending write records chained. */
  row?: AuditEventRow;
  /** The record may commit without waiting for its WAL flush (AUDIT_READ_COMMIT=relaxed, successful reads). */
  relaxed?: boolean;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * Group commit for records without a write transaction (reads, searches, denials, token requests):
 * one writer per node gathers the records of requests in flight and appends them with one
 * statement and one commit, so audit does not cost a commit per read. An idle writer starts a
 * batch as soon as a record arrives (with `AUDIT_GROUP_COMMIT_WAIT_MS` > 0 it first waits that
 * long to gather more); records arriving while a batch commits form the next one (up to
 * `AUDIT_GROUP_COMMIT_MAX` each), so batches grow with the load and a lone read waits for no
 * timer, only for its own commit (issue 23). Each caller's promise
 * resolves only after its batch committed, so a read's record is durable before its response.
 * Every batch first chains the write records committed since the last one (`audit_pending`), so
 * this writer is the only holder of the chain head's lock on its node, and holds it only for its
 * own short transaction (docs/audit.md). A sweep every few seconds chains what a node that stopped
 * between a write's commit and its batch left pending.
 */
@Injectable()
export class AuditTrailWriter implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger('AuditTrail');
  private queue: Waiting[] = [];
  private timer?: NodeJS.Timeout;
  /** Starts the batch of `withNext` rows whose next record did not come. */
  private heldTimer?: NodeJS.Timeout;
  private sweep?: NodeJS.Timeout;
  private flushing?: Promise<void>;

  constructor(
    private readonly repository: AuditTrailRepository,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /**
   * `withNext`: the row starts no batch; it joins the next record's (its request's own record,
   * right after), so both take one commit. Should none come, it is written after WITH_NEXT_MAX_MS.
   */
  append(row: AuditEventRow, { withNext = false }: { withNext?: boolean } = {}): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ row, relaxed: this.relaxed(row), resolve, reject });
      if (!withNext) this.schedule();
      else if (!this.flushing) this.heldTimer ??= setTimeout(() => this.start(), WITH_NEXT_MAX_MS);
    });
  }

  /**
   * Several rows queued at once, so they go into one batch (unless it reaches AUDIT_GROUP_COMMIT_MAX):
   * `append` called row by row would start a batch with the first row alone.
   */
  appendMany(rows: readonly AuditEventRow[]): Promise<void> {
    if (!rows.length) return Promise.resolve();
    const written = rows.map((row) => new Promise<void>((resolve, reject) => this.queue.push({ row, relaxed: this.relaxed(row), resolve, reject })));
    this.schedule();
    return Promise.all(written).then(() => undefined);
  }

  /**
   * AUDIT_READ_COMMIT=relaxed: only successful reads and searches (BALP action R, outcome 0);
   * refusals, operations and security events stay durable before their response.
   */
  private relaxed(row: AuditEventRow): boolean {
    return this.config.audit.relaxedReadCommit && row.action === 'R' && row.outcome === '0';
  }

  /** Starts a batch now with what is queued (rows waiting for a next record that will not come here). */
  startNow(): void {
    if (this.queue.length && !this.flushing) this.start();
  }

  /**
   * Resolves once the write records committed so far are chained (joins the next batch). Never
   * rejects: the records are already durable in `audit_pending`; a failure leaves them for the
   * next batch or the sweep.
   */
  chainPending(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.queue.push({ resolve, reject: () => resolve() });
      this.schedule();
    });
  }

  onApplicationBootstrap(): void {
    this.sweep = setInterval(() => {
      if (!this.queue.length && !this.flushing) void this.chainPending();
    }, SWEEP_MS);
    this.sweep.unref();
  }

  private schedule(): void {
    if (this.flushing) return; // the running flush takes what queued meanwhile
    if (this.queue.length >= this.config.audit.groupCommitMax || this.config.audit.groupCommitWaitMs === 0) {
      this.start();
      return;
    }
    this.timer ??= setTimeout(() => this.start(), this.config.audit.groupCommitWaitMs);
  }

  private start(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.heldTimer) clearTimeout(this.heldTimer);
    this.timer = undefined;
    this.heldTimer = undefined;
    this.flushing ??= this.flush().finally(() => {
      this.flushing = undefined;
      if (this.queue.length) this.schedule();
    });
  }

  private async flush(): Promise<void> {
    while (this.queue.length) {
      const batch = this.queue.splice(0, this.config.audit.groupCommitMax);
      try {
        // Relaxed only if every record in it may be: one durable record makes the batch durable.
        // A batch without records (a write's chaining, the sweep) only moves write records that
        // committed with their write into the chain: if a PostgreSQL crash undid that move, they
        // would still be in audit_pending and the next batch would chain them, so it need not
        // wait for its flush either (one WAL flush per create instead of two, in every mode).
        const relaxed = batch.every((w) => !w.row || w.relaxed);
        await this.repository.appendAlone(batch.flatMap((w) => (w.row ? [w.row] : [])), relaxed);
        for (const w of batch) w.resolve();
      } catch (err) {
        // Only the error code: a database message can quote the values it refused.
        this.logger.error({ msg: 'audit append failed', code: (err as { code?: string }).code ?? 'unknown', records: batch.length });
        for (const w of batch) w.reject(err);
      }
    }
  }

  /** Commits what is queued before the pool closes. */
  async onApplicationShutdown(): Promise<void> {
    clearInterval(this.sweep);
    if (this.queue.length) this.start();
    await this.flushing;
    await this.repository.releaseWriterConnection();
  }
}
