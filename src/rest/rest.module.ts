import { MiddlewareConsumer, Module, NestModule } from '@nestjs/common';
import { FhirHttpMiddleware } from '../common/http/fhir-http.middleware';
import { PipelineModule } from '../pipeline/pipeline.module';
import { AdminClientsController } from './admin-clients.controller';
import { AuditExportController } from './audit-export.controller';
import { FhirRestModule } from './fhir-rest.module';
import { TokenController } from './token.controller';

/**
 * Every HTTP controller sits here, above the pipeline (docs/architecture.md, "Layers"): the FHIR
 * API (FhirRestModule, under the base path), the token endpoint and SMART discovery, the admin API
 * and the audit export. The services they call come from the global auth and audit modules.
 */
@Module({
  imports: [PipelineModule, FhirRestModule],
  controllers: [TokenController, AdminClientsController, AuditExportController],
})
export class RestModule implements NestModule {
  configure(consumer: MiddlewareConsumer): void {
    consumer.apply(FhirHttpMiddleware).forRoutes(TokenController, AdminClientsController);
  }
}
