import { Module } from '@nestjs/common';
import { FhirModule } from '../fhir/fhir.module';
import { PatientDemographicsListener } from './patient-demographics.listener';
import { PatientDemographicsRepository } from './patient-demographics.repository';

/**
 * Patient identity across organizations (docs/identity.md): the demographics index matching
 * reads, kept by a pre-commit write listener on Patient writes.
 */
@Module({
  imports: [FhirModule],
  providers: [PatientDemographicsRepository, PatientDemographicsListener],
})
export class IdentityModule {}
