import { Injectable } from '@nestjs/common';
import { OperationOutcomeError, validateResource } from '@medplum/core';
import type { OperationOutcomeIssue, Resource } from '@medplum/fhirtypes';
import { FhirError } from '../../common/fhir-error';
import { numericView } from '../../common/fhir-json';
import { assertJsonShape } from '../../common/json-shape';
import { FhirDefinitions } from '../definitions/fhir-definitions';
import { ProfileRegistry } from './profile.registry';
import { TerminologyBindingValidator } from './terminology-binding.validator';

const ID_PATTERN = /^[A-Za-z0-9\-.]{1,64}$/;

/**
 * Validation on write: R4 structure, cardinality and formats (@medplum/core), required terminology
 * bindings (ours: @medplum/core does not check them), then the HIE's profiles. Base failures are
 * 400; profile failures are 422 (the resource is valid FHIR but not acceptable to this exchange).
 */
@Injectable()
export class ResourceValidator {
  private readonly definitions = FhirDefinitions.get();
  private readonly profiles = new ProfileRegistry();
  private readonly terminology = new TerminologyBindingValidator();

  /** Checks that a request body is a resource of the expected type before anything else. */
  assertResourceBody(body: unknown, expectedType: string | undefined): Resource {
    if (body === undefined || body === null || typeof body !== 'object' || Array.isArray(body)) {
      throw FhirError.badRequest('The request body must be a FHIR resource as a JSON object', undefined, 'structure');
    }
    const resourceType = (body as { resourceType?: unknown }).resourceType;
    if (typeof resourceType !== 'string') {
      throw FhirError.badRequest('The resource has no resourceType', ['resourceType'], 'required');
    }
    if (expectedType && resourceType !== expectedType) {
      throw FhirError.badRequest(
        `resourceType '${resourceType}' does not match the type in the URL (${expectedType})`,
        ['resourceType'],
      );
    }
    if (!this.definitions.isStorable(resourceType)) {
      throw FhirError.badRequest(`'${resourceType}' is not a storable FHIR R4 resource type`, ['resourceType'], 'not-supported');
    }
    const id = (body as { id?: unknown }).id;
    if (id !== undefined && (typeof id !== 'string' || !ID_PATTERN.test(id))) {
      throw FhirError.badRequest('id must match [A-Za-z0-9\\-\\.]{1,64}', [`${resourceType}.id`]);
    }
    return body as Resource;
  }

  validate(resource: Resource): void {
    const { base, profile } = this.issues(resource);
    const errors = base.filter((i) => i.severity === 'error' || i.severity === 'fatal');
    if (errors.length) throw new FhirError(400, errors);
    if (profile.length) throw new FhirError(422, profile);
  }

  /**
   * What `validate` checks, as issues instead of a refusal ($validate answers them): `base` (every
   * severity) and, when the base has no errors, the errors of the required, named and `extraProfiles`.
   */
  issues(received: Resource, extraProfiles: readonly string[] = []): { base: OperationOutcomeIssue[]; profile: OperationOutcomeIssue[] } {
    // Bodies were checked when parsed; this catches what a PATCH put together.
    assertJsonShape(received);
    // The validators expect numbers where decimals kept their text (1.50).
    const resource = numericView(received).view;
    // A Binary's content is bounded by BINARY_LIMIT / BODY_LIMIT when it arrives, not by the
    // validator's 1 MiB default, which stays for inline attachments of other resources.
    const options = resource.resourceType === 'Binary' ? { base64BinaryMaxBytes: Number.MAX_SAFE_INTEGER } : undefined;
    const base = [...collect(() => validateResource(resource, options)), ...this.terminology.validate(resource)];
    if (base.some((i) => i.severity === 'error' || i.severity === 'fatal')) return { base, profile: [] };

    const profileUrls = new Set([
      ...this.profiles.requiredFor(resource.resourceType),
      ...(resource.meta?.profile ?? []).filter((url) => this.profiles.get(url)),
      ...extraProfiles,
    ]);
    const profileIssues: OperationOutcomeIssue[] = [];
    for (const url of profileUrls) {
      const profile = this.profiles.get(url)!;
      for (const issue of collect(() => validateResource(resource, { profile }))) {
        if (issue.severity !== 'error' && issue.severity !== 'fatal') continue;
        profileIssues.push({ ...issue, diagnostics: `${issue.diagnostics ?? issue.details?.text ?? 'invalid'} (profile ${url})` });
      }
    }
    return { base, profile: profileIssues };
  }

  profileRegistry(): ProfileRegistry {
    return this.profiles;
  }
}

function collect(run: () => OperationOutcomeIssue[]): OperationOutcomeIssue[] {
  try {
    return run();
  } catch (err) {
    if (err instanceof OperationOutcomeError) {
      return err.outcome.issue.map((i) => ({ ...i, diagnostics: i.diagnostics ?? i.details?.text }));
    }
    throw err;
  }
}
