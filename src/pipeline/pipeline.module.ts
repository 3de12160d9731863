import { Global, Module } from '@nestjs/common';
import { FhirModule } from '../fhir/fhir.module';
import { SystemAccess } from '../fhir/pipeline/system-access';
import { BundleProcessor } from './bundle.processor';
import { FhirPipeline } from './fhir-pipeline.service';
import { InteractionExecutor } from './interaction.executor';
import { PipelineSystemAccess } from './system-access.service';

/**
 * The orchestration layer (GUIDE §1, §1b): authorize -> consent -> write policy -> execute ->
 * audit, over the records core (FhirModule) and the stages the policy modules bind (auth, consent,
 * audit are global modules). Global so operations and the exchange modules can ask for
 * `SystemAccess` (an abstract class in the vocabulary) without importing anything from here; only
 * the controllers (src/rest) and the exchange modules import `FhirPipeline` itself.
 */
@Global()
@Module({
  imports: [FhirModule],
  providers: [FhirPipeline, InteractionExecutor, BundleProcessor, { provide: SystemAccess, useClass: PipelineSystemAccess }],
  exports: [FhirPipeline, SystemAccess],
})
export class PipelineModule {}
