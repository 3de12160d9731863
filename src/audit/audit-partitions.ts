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
    await this.ensure();
    await this.reportGuard();
    this.timer = setInterval(() => void this.ensure(), DAY_MS);
    this.timer.unref();
  }

  /**
   * Not fatal: an app role without CREATE (docs/audit.md, privileges) leaves partitions to the
   * owner's scheduled job, and the DEFAULT partition takes records meanwhile.
   */
  private async ensure(): Promise<void> {
    try {
      await this.trail.ensurePartitions(MONTHS_AHEAD);
    } catch (err) {
      this.logger.warn({ msg: 'audit partitions not created; records go to audit_event_default until they are', code: (err as { code?: string }).code ?? 'unknown' });
    }
  }

  /** Says at start whether privileges or only the trigger keep this role from changing the log. */
  private async reportGuard(): Promise<void> {
    try {
      const { role, privileges } = await this.trail.appendOnlyGuard();
      if (privileges) this.logger.log({ msg: 'audit trail append-only by privileges and trigger', role });
      else this.logger.warn({ msg: 'audit trail append-only by trigger only: this role owns audit_event, is a superuser or may change its rows (docs/audit.md)', role });
    } catch (err) {
      this.logger.warn({ msg: 'audit trail privileges not checked', code: (err as { code?: string }).code ?? 'unknown' });
    }
  }

  onApplicationShutdown(): void {
    if (this.timer) clearInterval(this.timer);
  }
}
