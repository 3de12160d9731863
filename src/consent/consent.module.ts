import { Global, Module } from '@nestjs/common';
import { ConsentStage } from '../fhir/pipeline/pipeline.stages';
import { UnrestrictedConsent } from './unrestricted-consent.stage';

/**
 * Provides the pipeline's consent stage (GUIDE §4). Today the default: no consent restriction
 * beyond scopes and the write rule; the consent-checked stage replaces the binding here, without
 * touching FhirModule.
 */
@Global()
@Module({
  providers: [{ provide: ConsentStage, useClass: UnrestrictedConsent }],
  exports: [ConsentStage],
})
export class ConsentModule {}
