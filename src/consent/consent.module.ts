import { Global, Module } from '@nestjs/common';
import { ConsentStage } from '../fhir/pipeline/pipeline.stages';
import { ReadAccessModule } from '../fhir/pipeline/read-access';
import { WriteExtensionsModule } from '../fhir/pipeline/write-extensions.module';
import { ConsentAccessStage } from './consent-access.stage';
import { ConsentMaterializer } from './consent-materializer';
import { CONSENT_POLICY, loadConsentPolicy } from './consent-policy';
import { PatientLinkMaterializer } from './patient-link-materializer';

/**
 * Consent-checked access (GUIDE §4, docs/consent.md): the pipeline's consent stage, and the
 * pre-commit write listeners that materialize Consent resources into consent_provision and Patient.link into the linked
 * records' closure (patient_link) in their write's transaction.
 */
@Global()
@Module({
  imports: [WriteExtensionsModule, ReadAccessModule],
  providers: [
    { provide: CONSENT_POLICY, useFactory: () => loadConsentPolicy() },
    { provide: ConsentStage, useClass: ConsentAccessStage },
    ConsentMaterializer,
    PatientLinkMaterializer,
  ],
  exports: [ConsentStage, CONSENT_POLICY],
})
export class ConsentModule {}
