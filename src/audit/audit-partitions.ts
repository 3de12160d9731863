import { Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { AuditTrailRepository } from './audit-trail.repository';

const DAY_MS = 24 * 60 * 60 * 1000;
/** Monthly partitions kept ready ahead of the clock. */
const MONTHS_AHEAD = 2;

/** Creates the audit table's monthly partitions ahead of time: at start and daily (any node may; idempotent). */
@Injectable()
export class AuditPartitions implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('AuditTrail');
  private timer?: NodeJS.Timeout;

  constructor(private readonly trail: AuditTrailRepository) {}

  async onModuleInit(): Promise<void> {
    await this.trail.ensurePartitions(MONTHS_AHEAD);
    this.timer = setInterval(() => {
      this.trail.ensurePartitions(MONTHS_AHEAD).catch((err: { code?: string }) => this.logger.error({ msg: 'audit partition creation failed', code: err.code ?? 'unknown' }));
    }, DAY_MS);
    this.timer.unref();
  }

  onApplicationShutdown(): void {
    if (this.timer) clearInterval(this.timer);
  }
}
