import { Module } from '@nestjs/common';
import { FhirModule } from '../fhir/fhir.module';
import { AccessReportOperation } from './access-report.operation';
import { AuditExportController } from './audit-export.controller';
import { VerifyChainOperation } from './verify-chain.operation';

/** Auditor tools on the stored trail: $verify-chain, Patient/$access-report, the NDJSON export. */
@Module({
  imports: [FhirModule],
  controllers: [AuditExportController],
  providers: [VerifyChainOperation, AccessReportOperation],
})
export class AuditToolsModule {}
