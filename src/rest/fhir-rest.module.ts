import { MiddlewareConsumer, Module, NestModule } from '@nestjs/common';
import { FhirHttpMiddleware } from '../common/http/fhir-http.middleware';
import { PipelineModule } from '../pipeline/pipeline.module';
import { FhirResponseWriter } from './fhir-response.writer';
import { FhirController } from './fhir.controller';

/** The FHIR REST API: HTTP <-> Interaction, mounted at the FHIR base path (app.module.ts). */
@Module({
  imports: [PipelineModule],
  controllers: [FhirController],
  providers: [FhirResponseWriter],
})
export class FhirRestModule implements NestModule {
  configure(consumer: MiddlewareConsumer): void {
    consumer.apply(FhirHttpMiddleware).forRoutes(FhirController);
  }
}
