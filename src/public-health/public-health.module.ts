import { MiddlewareConsumer, Module, NestModule } from '@nestjs/common';
import { AuthModule } from '../auth/auth.module';
import { FhirHttpMiddleware } from '../common/http/fhir-http.middleware';
import { FhirModule } from '../fhir/fhir.module';
import { BulkExportController } from './bulk-export.controller';
import { BulkExportJob } from './bulk-export.job';
import { GroupExportOperation, PatientExportOperation, SystemExportOperation } from './bulk-export.operation';
import { BulkExportRepository } from './bulk-export.repository';
import { EvaluateMeasureOperation } from './measure-evaluation.operation';

/**
 * Public-health reporting (issue 26, docs/public-health.md): Bulk Data `$export` and coverage
 * statistics (`$evaluate-measure`); case reports plug in beside them. Built on the extension points: operations registered with
 * the OperationRegistry, the outbox job queue, and SystemAccess for work on a client's behalf.
 */
@Module({
  imports: [FhirModule, AuthModule],
  controllers: [BulkExportController],
  providers: [BulkExportRepository, BulkExportJob, SystemExportOperation, PatientExportOperation, GroupExportOperation, EvaluateMeasureOperation],
})
export class PublicHealthModule implements NestModule {
  configure(consumer: MiddlewareConsumer): void {
    // Request id and context, content negotiation (JSON and NDJSON) as on the FHIR routes.
    consumer.apply(FhirHttpMiddleware).forRoutes(BulkExportController);
  }
}
