import { Inject, Injectable, Logger, OnApplicationShutdown } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '../config/app.config';
import type { AuditEventRow } from './audit-event.builder';
import { AuditTrailRepository } from './audit-trail.repository';

interface Waiting {
  row: AuditEventRow;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * Group commit for records without a write transaction (reads, searches, denials, token requests):
 * one writer per node gathers the records of requests in flight and appends them with one
 * statement and one commit, so audit does not cost a commit per read. A batch starts when the
 * first record arrives and waits at most `AUDIT_GROUP_COMMIT_WAIT_MS`; records arriving while a
 * batch commits form the next one (up to `AUDIT_GROUP_COMMIT_MAX` each). Each caller's promise
 * resolves only after its batch committed, so a read's record is durable before its response.
 */
@Injectable()
export class AuditTrailWriter implements OnApplicationShutdown {
  private readonly logger = new Logger('AuditTrail');
  private queue: Waiting[] = [];
  private timer?: NodeJS.Timeout;
  private flushing?: Promise<void>;

  constructor(
    private readonly repository: AuditTrailRepository,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  append(row: AuditEventRow): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ row, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.flushing) return; // the running flush takes what queued meanwhile
    if (this.queue.length >= this.config.audit.groupCommitMax) {
      this.start();
      return;
    }
    this.timer ??= setTimeout(() => this.start(), this.config.audit.groupCommitWaitMs);
  }

  private start(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.flushing ??= this.flush().finally(() => {
      this.flushing = undefined;
      if (this.queue.length) this.schedule();
    });
  }

  private async flush(): Promise<void> {
    while (this.queue.length) {
      const batch = this.queue.splice(0, this.config.audit.groupCommitMax);
      try {
        await this.repository.appendAlone(batch.map((w) => w.row));
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
    if (this.queue.length) this.start();
    await this.flushing;
    await this.repository.releaseWriterConnection();
  }
}
