import { Module } from '@nestjs/common';
import { FhirModule } from '../fhir/fhir.module';
import { IDENTITY_CONFIG, loadIdentityConfig } from './identity-config';
import { IhePixOperation } from './ihe-pix.operation';
import { IdentityLinkRepository } from './identity-link.repository';
import { IdentityBatchMatchJob } from './identity-batch-match.job';
import { IdentityMatchingJob } from './identity-matching.job';
import { IdentityRematchJob, PersonRematchOperation } from './identity-rematch.job';
import { MatchOperation } from './match.operation';
import { PatientDemographicsListener } from './patient-demographics.listener';
import { PatientDemographicsRepository } from './patient-demographics.repository';
import { PersonLinkOperation, PersonMergeOperation, PersonSplitOperation, PersonUnlinkOperation } from './person-admin.operations';
import { PersonLinks } from './person-links';

/**
 * Patient identity across organizations (docs/identity.md): the demographics index matching
 * reads, kept by a pre-commit write listener on Patient writes; `Patient/$match`.
 */
@Module({
  imports: [FhirModule],
  providers: [{ provide: IDENTITY_CONFIG, useFactory: () => loadIdentityConfig() }, PatientDemographicsRepository, PatientDemographicsListener, MatchOperation, IdentityMatchingJob, PersonLinks, IdentityLinkRepository, PersonLinkOperation, PersonUnlinkOperation, PersonSplitOperation, PersonMergeOperation, IdentityRematchJob, PersonRematchOperation, IhePixOperation, IdentityBatchMatchJob],
})
export class IdentityModule {}
