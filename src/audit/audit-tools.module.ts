import { Module } from '@nestjs/common';
import { FhirModule } from '../fhir/fhir.module';
import { AccessReportOperation } from './access-report.operation';
import { AuditEventHandler } from './audit-event.handler';
import { VerifyChainOperation } from './verify-chain.operation';

/**
 * Auditor tools on the stored trail: $verify-chain, Patient/$access-report (the NDJSON export's
 * controller is in src/rest), and
 * the AuditEvent handler (how the pipeline reads and searches AuditEvent).
 */
@Module({
  imports: [FhirModule],
  providers: [VerifyChainOperation, AccessReportOperation, AuditEventHandler],
})
export class AuditToolsModule {}
