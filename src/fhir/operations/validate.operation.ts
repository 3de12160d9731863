import { Injectable, OnModuleInit } from '@nestjs/common';
import type { OperationOutcome, OperationOutcomeIssue, Resource } from '@medplum/fhirtypes';
import type { EntityManager } from 'typeorm';
import type { StorageSession } from '../storage/storage-session';
import { FhirError } from '../../common/fhir-error';
import type { AccessContext } from '../pipeline/access-context';
import type { InteractionResult, OperationInteraction } from '../pipeline/interaction';
import { ResourceMetaRepository } from '../storage/resource-meta.repository';
import { ResourceRepository, StoredVersion } from '../storage/resource.repository';
import { ResourceValidator } from '../validation/resource.validator';
import { FhirOperation } from './fhir-operation';
import { shippedOperationDefinition } from './operation-definitions';
import { isEmpty, isParameters, OperationInput, parseOperationInput } from './operation-parameters';
import { OperationRegistry } from './operation.registry';

const MODES = ['create', 'update', 'delete'] as const;
type Mode = (typeof MODES)[number];

/**
 * `$validate` (Resource-validate) at type and instance level: the resource (a Parameters `resource`,
 * or the body itself; on an instance without one, the stored current version) is checked by the same
 * validator as writes — structure, required bindings, the HIE profiles, those in `meta.profile` and
 * a `profile` asked for. `mode=update` also checks the id and that this client may change the stored
 * resource; `mode=delete` that it may delete it (the write rule). Always 200 with an
 * OperationOutcome (`information` "All OK" when there is nothing to say); 4xx only when it could not
 * validate (no resource, wrong type, unknown parameter). Stores nothing: it runs without a
 * transaction and writes no row.
 */
@Injectable()
export class ValidateOperation extends FhirOperation implements OnModuleInit {
  readonly name = 'validate';
  readonly definition = shippedOperationDefinition('validate');
  readonly levels = ['type', 'instance'] as const;
  readonly affectsState = false;
  readonly roles = ['hospital'] as const;
  override readonly scopes = ['{type}.r'];

  constructor(
    private readonly operations: OperationRegistry,
    private readonly validator: ResourceValidator,
    private readonly repository: ResourceRepository,
    private readonly meta: ResourceMetaRepository,
  ) {
    super();
  }

  onModuleInit(): void {
    this.operations.register(this);
  }

  /** The body is a Parameters, or the resource to validate itself (a Parameters validated as one is `resource` in a Parameters). */
  override input(i: OperationInteraction): OperationInput {
    return parseOperationInput(this.definition, i, { body: wrapped(i) });
  }

  async execute(ctx: AccessContext, i: OperationInteraction, { tx }: StorageSession, input: OperationInput): Promise<InteractionResult> {
    const resourceType = i.resourceType!;
    const mode = input.text('mode');
    if (mode !== undefined && !MODES.includes(mode as Mode)) throw FhirError.badRequest(`mode must be create, update or delete, not '${mode.slice(0, 40)}'`, ['mode']);
    const profile = input.text('profile');
    let body: unknown = wrapped(i) ? input.resource('resource') : isEmpty(i.body) ? undefined : i.body;

    const issues: OperationOutcomeIssue[] = [];
    let stored: StoredVersion | undefined;
    if (mode === 'delete') {
      if (i.id === undefined) throw FhirError.badRequest('$validate with mode=delete is invoked on the instance to delete', ['mode']);
      issues.push(...(await this.writeIssues(ctx, resourceType, i.id, 'delete', tx)));
      return this.answer(issues);
    }
    if (body === undefined) {
      if (i.id === undefined || mode !== undefined) throw FhirError.badRequest('$validate needs the resource to validate (the body, or a Parameters resource)', ['resource']);
      stored = await this.repository.readCurrent(ctx, resourceType, i.id, tx);
      if (!stored) throw FhirError.notFound(`${resourceType}/${i.id} is not known`);
      if (stored.deleted || !stored.resource) throw new FhirError(410, 'deleted', `${resourceType}/${i.id} was deleted`);
      body = stored.resource;
    }
    const resource = this.validator.assertResourceBody(body, resourceType);
    if (mode === 'update') issues.push(...(await this.updateIssues(ctx, resource, i, tx)));
    const profiles: string[] = [];
    if (profile !== undefined) {
      if (this.validator.profileRegistry().get(profile)) profiles.push(profile);
      else issues.push({ severity: 'error', code: 'not-supported', diagnostics: `Profile ${profile.slice(0, 200)} is not known to this server`, expression: ['profile'] });
    }
    const { base, profile: profileIssues } = await this.validator.issuesAsync(resource as Resource, profiles);
    return this.answer([...base, ...profileIssues, ...issues], stored);
  }

  /** An update names the resource it replaces, and this client must be allowed to change it. */
  private async updateIssues(ctx: AccessContext, resource: Resource, i: OperationInteraction, tx: EntityManager): Promise<OperationOutcomeIssue[]> {
    if (resource.id === undefined) {
      return [{ severity: 'error', code: 'required', diagnostics: 'An update must carry the resource id', expression: [`${resource.resourceType}.id`] }];
    }
    if (i.id !== undefined && resource.id !== i.id) {
      return [{ severity: 'error', code: 'invalid', diagnostics: `The id in the resource (${resource.id}) does not match the URL (${i.id})`, expression: [`${resource.resourceType}.id`] }];
    }
    return this.writeIssues(ctx, resource.resourceType, resource.id, 'update', tx);
  }

  /**
   * The write rule as a validation issue: the same answer whether the resource is missing (delete),
   * hidden or another organization's, as a refused write gives. An update of an unused id would create.
   */
  private async writeIssues(ctx: AccessContext, resourceType: string, id: string, mode: 'update' | 'delete', tx: EntityManager): Promise<OperationOutcomeIssue[]> {
    const row = await this.meta.writability(ctx, resourceType, id, tx);
    if (row ? row.writable : mode === 'update') return [];
    return [{ severity: 'error', code: 'forbidden', diagnostics: `${resourceType}/${id} is not a resource this client may ${mode === 'delete' ? 'delete' : 'change'}` }];
  }

  private answer(issues: OperationOutcomeIssue[], stored?: StoredVersion): InteractionResult {
    const outcome: OperationOutcome = {
      resourceType: 'OperationOutcome',
      issue: issues.length ? issues : [{ severity: 'information', code: 'informational', diagnostics: 'All OK' }],
    };
    return {
      status: 200,
      resource: outcome,
      touched: stored ? [{ reference: `${stored.resourceType}/${stored.id}`, versionId: String(stored.versionId), patients: stored.compartments }] : [],
    };
  }
}

function wrapped(i: OperationInteraction): boolean {
  return isParameters(i.body) && i.resourceType !== 'Parameters';
}
