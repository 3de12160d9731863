import { Injectable } from '@nestjs/common';
import type { Resource } from '@medplum/fhirtypes';
import type { EntityManager } from 'typeorm';
import { ResourceWriteHook } from '../fhir/storage/resource-write-hook';
import { ConsentMaterializer } from './consent-materializer';
import { PatientLinkMaterializer } from './patient-link-materializer';

/** The consent module's work in write transactions: Consent provisions and Patient links. */
@Injectable()
export class ConsentWriteHooks extends ResourceWriteHook {
  private readonly hooks: readonly ResourceWriteHook[];

  constructor(consents: ConsentMaterializer, links: PatientLinkMaterializer) {
    super();
    this.hooks = [consents, links];
  }

  handles(resourceType: string): boolean {
    return this.hooks.some((h) => h.handles(resourceType));
  }

  async written(tx: EntityManager, resourceType: string, id: string, resource: Resource | undefined, firstVersion?: boolean): Promise<void> {
    for (const hook of this.hooks) if (hook.handles(resourceType)) await hook.written(tx, resourceType, id, resource, firstVersion);
  }
}
