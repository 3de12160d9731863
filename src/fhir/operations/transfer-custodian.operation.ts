import { Injectable, OnModuleInit } from '@nestjs/common';
import type { Parameters } from '@medplum/fhirtypes';
import type { StorageSession } from '../storage/storage-session';
import { FhirError } from '../../common/fhir-error';
import type { AccessContext } from '../pipeline/access-context';
import { SystemAccess } from '../pipeline/system-access';
import type { InteractionResult, OperationInteraction } from '../pipeline/interaction';
import { ResourceRepository } from '../storage/resource.repository';
import { FhirOperation } from './fhir-operation';
import { shippedOperationDefinition } from './operation-definitions';
import type { OperationInput } from './operation-parameters';
import { OperationRegistry } from './operation.registry';

const ORGANIZATION_REF_RE = /^Organization\/([A-Za-z0-9\-.]{1,64})$/;

/**
 * `$transfer-custodian` (HIE admins only): `POST /fhir/{Type}/{id}/$transfer-custodian` with a
 * Parameters `organization` (valueReference `Organization/{id}`, an Organization stored here)
 * makes that organization the resource's custodian (docs/architecture.md, Custodian and
 * written-by): from then on it has the "own data" access of consent and the default write right,
 * and the previous custodian has neither. No new version is created (the content is unchanged);
 * every version row carries the new custodian. Audited as an update (`U`) of the resource, with
 * the previous and new custodian in the record's `write-policy` line; the rows are changed under
 * a named system context (`custodian-transfer`), since the admin may not read patient data.
 */
@Injectable()
export class TransferCustodianOperation extends FhirOperation implements OnModuleInit {
  readonly name = 'transfer-custodian';
  readonly definition = shippedOperationDefinition('transfer-custodian');
  readonly levels = ['instance'] as const;
  readonly affectsState = true;
  readonly roles = ['admin'] as const;
  override readonly auditAction = 'U' as const;

  constructor(
    private readonly operations: OperationRegistry,
    private readonly repository: ResourceRepository,
    private readonly system: SystemAccess,
  ) {
    super();
  }

  onModuleInit(): void {
    this.operations.register(this);
  }

  async execute(ctx: AccessContext, i: OperationInteraction, { tx }: StorageSession, input: OperationInput): Promise<InteractionResult> {
    // The definition makes organization a required Reference, given once.
    const given = input.all('organization');
    const m = ORGANIZATION_REF_RE.exec(given[0].valueReference?.reference ?? '');
    if (!m) throw FhirError.badRequest('organization needs a valueReference to Organization/{id}', ['organization']);
    const custodian = m[1];
    const system = await this.system.mint('custodian-transfer', ctx.principal);
    const organization = await this.repository.readCurrent(system, 'Organization', custodian, tx);
    if (!organization || organization.deleted) {
      throw new FhirError(422, 'not-found', `organization: there is no Organization/${custodian}`, ['organization']);
    }
    const target = `${i.resourceType}/${i.id}`;
    const moved = await this.repository.transferCustodian(system, i.resourceType!, i.id!, custodian, tx);
    if (!moved) throw FhirError.notFound(`${target} is not known`);
    const parameters: Parameters = {
      resourceType: 'Parameters',
      parameter: [
        { name: 'custodian', valueReference: { reference: `Organization/${custodian}` } },
        // A resource created by a writer with no organization had no custodian: nothing to name.
        ...(moved.previous ? [{ name: 'previous', valueReference: { reference: `Organization/${moved.previous}` } }] : []),
      ],
    };
    return {
      status: 200,
      resource: parameters,
      touched: [{ reference: target, versionId: String(moved.versionId), patients: moved.compartments }],
      writeDecision: {
        policy: 'custodian-transfer',
        permit: true,
        reason: `admin transferred custody from Organization/${moved.previous ?? '-'} to Organization/${custodian}`,
      },
    };
  }
}
