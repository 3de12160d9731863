import { Global, Module } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '../config/app.config';
import { AuditStage } from '../fhir/pipeline/pipeline.stages';
import { AuditEventSearch } from './audit-event.search';
import { AuditPartitions } from './audit-partitions';
import { AuditTrailRepository } from './audit-trail.repository';
import { AuditTrailWriter } from './audit-trail.writer';
import { LogAuditStage } from './log-audit.stage';
import { StoredAuditStage } from './stored-audit.stage';

/**
 * Provides the pipeline's audit stage to every module (FHIR pipeline, token endpoint, auth guard):
 * the stored, hash-chained audit trail (docs/audit.md), or with AUDIT_STORE=off (benchmarks only)
 * the log line alone.
 */
@Global()
@Module({
  providers: [
    AuditTrailRepository,
    AuditTrailWriter,
    AuditPartitions,
    AuditEventSearch,
    {
      provide: AuditStage,
      inject: [APP_CONFIG, AuditTrailWriter, AuditTrailRepository],
      useFactory: (config: AppConfig, writer: AuditTrailWriter, repository: AuditTrailRepository) =>
        config.audit.store ? new StoredAuditStage(writer, repository) : new LogAuditStage(),
    },
  ],
  exports: [AuditStage, AuditTrailRepository, AuditEventSearch],
})
export class AuditModule {}
