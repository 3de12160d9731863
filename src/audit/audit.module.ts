import { Global, Module } from '@nestjs/common';
import { AuditStage } from '../fhir/pipeline/pipeline.stages';
import { LogAuditStage } from './log-audit.stage';

/** Provides the pipeline's audit stage to every module (FHIR pipeline, token endpoint, auth guard). */
@Global()
@Module({
  providers: [{ provide: AuditStage, useClass: LogAuditStage }],
  exports: [AuditStage],
})
export class AuditModule {}
