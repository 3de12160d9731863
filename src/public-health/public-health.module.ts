import { MiddlewareConsumer, Module, NestModule } from '@nestjs/common';
import { AuthModule } from '../auth/auth.module';
import { FhirHttpMiddleware } from '../common/http/fhir-http.middleware';
import { FhirModule } from '../fhir/fhir.module';
import { BulkExportController } from './bulk-export.controller';
import { BulkExportJob } from './bulk-export.job';
import { GroupExportOperation, PatientExportOperation, SystemExportOperation } from './bulk-export.operation';
import { BulkExportRepository } from './bulk-export.repository';
import { CaseReportReadAccess } from './case-report.access';
import { CASE_REPORT_CONFIG, loadCaseReportConfig } from './case-report.config';
import { CaseReportJob } from './case-report.job';
import { CaseReportListener } from './case-report.listener';
import { CaseReportRepository } from './case-report.repository';
import { EvaluateMeasureOperation } from './measure-evaluation.operation';

/**
 * Public-health reporting (issue 26, docs/public-health.md): Bulk Data `$export`, coverage
 * statistics (`$evaluate-measure`) and reportable-condition case reports. Built on the extension points: operations registered with
 * the OperationRegistry, the outbox job queue, and SystemAccess for work on a client's behalf.
 */
@Module({
  imports: [FhirModule, AuthModule],
  controllers: [BulkExportController],
  providers: [
    BulkExportRepository,
    BulkExportJob,
    SystemExportOperation,
    PatientExportOperation,
    GroupExportOperation,
    // Coverage statistics.
    EvaluateMeasureOperation,
    // Reportable-condition case reports.
    { provide: CASE_REPORT_CONFIG, useFactory: () => loadCaseReportConfig() },
    CaseReportRepository,
    CaseReportListener,
    CaseReportJob,
    CaseReportReadAccess,
  ],
})
export class PublicHealthModule implements NestModule {
  configure(consumer: MiddlewareConsumer): void {
    // Request id and context, content negotiation (JSON and NDJSON) as on the FHIR routes.
    consumer.apply(FhirHttpMiddleware).forRoutes(BulkExportController);
  }
}
