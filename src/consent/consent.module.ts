import { Global, Module } from '@nestjs/common';
import { ConsentStage } from '../fhir/pipeline/pipeline.stages';
import { ResourceWriteHook } from '../fhir/storage/resource-write-hook';
import { ConsentAccessStage } from './consent-access.stage';
import { ConsentMaterializer } from './consent-materializer';
import { CONSENT_POLICY, loadConsentPolicy } from './consent-policy';

/**
 * Consent-checked access (GUIDE §4, docs/consent.md): the pipeline's consent stage, and the write
 * hook that materializes Consent resources into consent_provision in their write's transaction.
 */
@Global()
@Module({
  providers: [
    { provide: CONSENT_POLICY, useFactory: () => loadConsentPolicy() },
    { provide: ConsentStage, useClass: ConsentAccessStage },
    { provide: ResourceWriteHook, useClass: ConsentMaterializer },
  ],
  exports: [ConsentStage, ResourceWriteHook, CONSENT_POLICY],
})
export class ConsentModule {}
