import { OnModuleInit } from '@nestjs/common';
import { FhirOperation } from '../fhir/operations/fhir-operation';
import { OperationRegistry } from '../fhir/operations/operation.registry';

/**
 * A hospital's read-only, type-level look-up of Patients (`Patient/$match`, `Patient/$ihe-pix`):
 * the same roles, scopes and level for both, so a change to who may look up patients is made once.
 */
export abstract class PatientLookupOperation extends FhirOperation implements OnModuleInit {
  readonly levels = ['type'] as const;
  override readonly resourceTypes = ['Patient'];
  readonly affectsState = false;
  readonly roles = ['hospital'] as const;
  override readonly scopes = ['Patient.r', 'Patient.s'];

  constructor(private readonly operations: OperationRegistry) {
    super();
  }

  onModuleInit(): void {
    this.operations.register(this);
  }
}
