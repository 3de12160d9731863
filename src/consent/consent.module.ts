import { Global, Module } from '@nestjs/common';
import { ConsentStage } from '../fhir/pipeline/pipeline.stages';
import { ResourceWriteHook } from '../fhir/storage/resource-write-hook';
import { ConsentAccessStage } from './consent-access.stage';
import { ConsentMaterializer } from './consent-materializer';
import { CONSENT_POLICY, loadConsentPolicy } from './consent-policy';
import { ConsentWriteHooks } from './consent-write-hooks';
import { PatientLinkMaterializer } from './patient-link-materializer';

/**
 * Consent-checked access (GUIDE §4, docs/consent.md): the pipeline's consent stage, and the write
 * hooks that materialize Consent resources into consent_provision and Patient.link into the linked
 * records' closure (patient_link) in their write's transaction.
 */
@Global()
@Module({
  providers: [
    { provide: CONSENT_POLICY, useFactory: () => loadConsentPolicy() },
    { provide: ConsentStage, useClass: ConsentAccessStage },
    ConsentMaterializer,
    PatientLinkMaterializer,
    { provide: ResourceWriteHook, useClass: ConsentWriteHooks },
  ],
  exports: [ConsentStage, ResourceWriteHook, CONSENT_POLICY],
})
export class ConsentModule {}
