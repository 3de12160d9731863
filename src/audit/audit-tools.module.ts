import { Module } from '@nestjs/common';
import { FhirModule } from '../fhir/fhir.module';
import { AccessReportOperation } from './access-report.operation';
import { AuditEventHandler } from './audit-event.handler';
import { AuditExportController } from './audit-export.controller';
import { VerifyChainOperation } from './verify-chain.operation';

/**
 * Auditor tools on the stored trail: $verify-chain, Patient/$access-report, the NDJSON export, and
 * the AuditEvent handler (how the pipeline reads and searches AuditEvent).
 */
@Module({
  imports: [FhirModule],
  controllers: [AuditExportController],
  providers: [VerifyChainOperation, AccessReportOperation, AuditEventHandler],
})
export class AuditToolsModule {}
