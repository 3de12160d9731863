import { Injectable, OnModuleInit } from '@nestjs/common';
import type { CapabilityStatementRest } from '@medplum/fhirtypes';
import type { StorageSession } from '../storage/storage-session';
import { FhirError } from '../../common/fhir-error';
import { CapabilityContributor, CapabilityStatementService } from '../capability/capability-statement.service';
import type { AccessContext } from '../pipeline/access-context';
import type { InteractionResult, OperationInteraction } from '../pipeline/interaction';
import { FhirOperation, OperationLevel } from './fhir-operation';

/** Routes `$operation` interactions to the registered operations and lists them in the CapabilityStatement. */
@Injectable()
export class OperationRegistry implements CapabilityContributor, OnModuleInit {
  private readonly operations = new Map<string, FhirOperation>();

  constructor(private readonly capabilities: CapabilityStatementService) {}

  onModuleInit(): void {
    this.capabilities.register(this);
  }

  register(operation: FhirOperation): void {
    this.operations.set(operation.name, operation);
    this.capabilities.invalidate();
  }

  find(name: string | undefined): FhirOperation | undefined {
    return name === undefined ? undefined : this.operations.get(name);
  }

  /**
   * The operation an interaction invokes, at a level and type it is defined for; otherwise 404
   * `not-supported` (never 403: an operation the server does not have is not a permission question).
   */
  resolve(i: OperationInteraction): FhirOperation {
    const name = i.operation ?? '';
    const operation = this.operations.get(name);
    if (!operation) throw new FhirError(404, 'not-supported', `Operation $${name.slice(0, 64)} is not supported by this server`);
    const level: OperationLevel = i.id !== undefined ? 'instance' : i.resourceType !== undefined ? 'type' : 'system';
    if (!operation.levels.includes(level) || (level !== 'system' && operation.resourceTypes && !operation.resourceTypes.includes(i.resourceType!))) {
      throw new FhirError(404, 'not-supported', `Operation $${name} is not defined at ${level} level${level === 'system' ? '' : ` for ${i.resourceType}`}`);
    }
    if (i.versionId !== undefined && !operation.versionLevel) {
      throw new FhirError(404, 'not-supported', `Operation $${name} is not defined at version level`);
    }
    i.operationDeclaration = operation;
    return operation;
  }

  execute(ctx: AccessContext, i: OperationInteraction, session: StorageSession): Promise<InteractionResult> {
    const operation = this.resolve(i);
    const name = operation.name;
    if (operation.affectsState && i.method === 'GET') {
      throw new FhirError(405, 'not-supported', `Operation $${name} changes state and must be invoked with POST`, undefined, { Allow: 'POST' });
    }
    return operation.execute(ctx, i, session);
  }

  contribute(rest: CapabilityStatementRest): void {
    const all = [...this.operations.values()].sort((a, b) => a.name.localeCompare(b.name));
    const system = all.filter((o) => o.levels.includes('system'));
    if (system.length) rest.operation = [...(rest.operation ?? []), ...system.map((o) => ({ name: o.name, definition: o.definition }))];
    for (const resource of rest.resource ?? []) {
      const ops = all.filter(
        (o) => (o.levels.includes('type') || o.levels.includes('instance')) && (!o.resourceTypes || o.resourceTypes.includes(resource.type as string)),
      );
      if (ops.length) resource.operation = [...(resource.operation ?? []), ...ops.map((o) => ({ name: o.name, definition: o.definition }))];
    }
  }
}
