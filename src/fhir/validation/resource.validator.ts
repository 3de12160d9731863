import { Inject, Injectable, OnModuleDestroy, Optional } from '@nestjs/common';
import { OperationOutcomeError, validateResource } from '@medplum/core';
import type { OperationOutcomeIssue, Resource } from '@medplum/fhirtypes';
import { FhirError } from '../../common/fhir-error';
import { numericView } from '../../common/fhir-json';
import { APP_CONFIG, AppConfig } from '../../config/app.config';
import { assertResourceCost, DEFAULT_RESOURCE_COST, ResourceCostLimits } from '../../common/resource-cost';
import { assertJsonShape, isShapeChecked } from '../../common/json-shape';
import { FhirDefinitions } from '../definitions/fhir-definitions';
import { narrativeIssues } from './narrative-xhtml';
import { ResourceValidationThread, ValidationIssues } from './resource-validation.thread';
import { ProfileRegistry } from './profile.registry';
import { TerminologyBindingValidator } from './terminology-binding.validator';

/**
 * `shapeChecked`: the resource is a parsed body `assertJsonShape` passed (`isShapeChecked`), or a
 * shallow copy of one with a server-assigned id, so its shape is not walked again.
 */
export interface CheckedBody {
  shapeChecked?: boolean;
}

const ID_PATTERN = /^[A-Za-z0-9\-.]{1,64}$/;
/**
 * Resources with more JSON values than this are validated in the worker thread: below it the
 * validators take a few tens of milliseconds (the largest Synthea resource, 6,389 values, ~150 ms).
 */
const INLINE_VALIDATION_MAX_ELEMENTS = 2_000;
/** Or more characters of text than this: a long narrative alone takes its time to parse and check. */
const INLINE_VALIDATION_MAX_TEXT = 256 * 1024;

/**
 * Validation on write: R4 structure, cardinality and formats (@medplum/core), required terminology
 * bindings (ours: @medplum/core does not check them), then the HIE's profiles. Base failures are
 * 400; profile failures are 422 (the resource is valid FHIR but not acceptable to this exchange).
 */
@Injectable()
export class ResourceValidator implements OnModuleDestroy {
  private readonly definitions = FhirDefinitions.get();
  private readonly profiles = new ProfileRegistry();
  private readonly terminology = new TerminologyBindingValidator();
  private readonly costLimits: ResourceCostLimits;

  private thread?: ResourceValidationThread;

  constructor(@Optional() @Inject(APP_CONFIG) config?: AppConfig) {
    this.costLimits = config?.resourceCost ?? DEFAULT_RESOURCE_COST;
  }

  async onModuleDestroy(): Promise<void> {
    await this.thread?.close();
  }

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
    refuseOn(this.issues(resource));
  }

  /** `validate` for the request path: a large resource is validated off the event loop. */
  async validateAsync(resource: Resource, options?: CheckedBody): Promise<void> {
    refuseOn(await this.issuesAsync(resource, [], options));
  }

  /**
   * `issues`, with a resource of more than INLINE_VALIDATION_MAX_ELEMENTS values (or
   * INLINE_VALIDATION_MAX_TEXT characters) validated in the worker thread, so that other requests (and `/healthz`) keep being answered meanwhile.
   */
  async issuesAsync(received: Resource, extraProfiles: readonly string[] = [], options?: CheckedBody): Promise<ValidationIssues> {
    const size = assertResourceCost(received, this.costLimits);
    // Its cost is checked: the inline validation does not walk the resource for it again.
    if (size.elements <= INLINE_VALIDATION_MAX_ELEMENTS && size.textLength <= INLINE_VALIDATION_MAX_TEXT) return this.checkedIssues(received, extraProfiles, options);
    this.thread ??= new ResourceValidationThread(this.costLimits);
    return this.thread.issues(JSON.stringify(received), extraProfiles);
  }

  /**
   * What `validate` checks, as issues instead of a refusal ($validate answers them): `base` (every
   * severity, 400 when one is an error) and `profile`, the 422 refusals: narrative XHTML that breaks
   * R4's rules and, when the base has no errors, the errors of the required, named and `extraProfiles`.
   */
  issues(received: Resource, extraProfiles: readonly string[] = []): ValidationIssues {
    // First, and cheaply: a resource too large to validate and index is refused before either.
    assertResourceCost(received, this.costLimits);
    return this.checkedIssues(received, extraProfiles);
  }

  /** `issues` of a resource whose cost `assertResourceCost` has already allowed. */
  private checkedIssues(received: Resource, extraProfiles: readonly string[], body?: CheckedBody): ValidationIssues {
    const { resource, base, narrativeErrors } = this.baseValidation(received, body);
    if (base.some((i) => i.severity === 'error' || i.severity === 'fatal')) return { base, profile: narrativeErrors };

    const profileUrls = new Set([
      ...this.profiles.requiredFor(resource.resourceType),
      ...(resource.meta?.profile ?? []).filter((url) => this.profiles.get(url)),
      ...extraProfiles,
    ]);
    const profileIssues: OperationOutcomeIssue[] = [...narrativeErrors];
    for (const url of profileUrls) {
      // Parsed once at load: validateResource(resource, { profile }) would parse it per call.
      const profile = this.profiles.schema(url)!;
      for (const issue of collect(() => profile.validate(resource))) {
        if (issue.severity !== 'error' && issue.severity !== 'fatal') continue;
        profileIssues.push({ ...issue, diagnostics: `${issue.diagnostics ?? issue.details?.text ?? 'invalid'} (profile ${url})` });
      }
    }
    return { base, profile: profileIssues };
  }

  /**
   * The R4 base issues of `issues` alone (structure, bindings, narrative warnings), without the
   * profiles: for a resource that is an operation's input, never stored (`Patient/$match`), whose
   * profile validation would be a second full validation thrown away.
   */
  baseIssues(received: Resource): OperationOutcomeIssue[] {
    // First, and cheaply: a resource too large to validate is refused before it is.
    assertResourceCost(received, this.costLimits);
    return this.baseValidation(received).base;
  }

  /** R4 validation of a resource whose cost is allowed: the base issues and the narrative's errors. */
  private baseValidation(received: Resource, body?: CheckedBody): { resource: Resource; base: OperationOutcomeIssue[]; narrativeErrors: OperationOutcomeIssue[] } {
    // Bodies were checked when parsed; this catches what a PATCH or other code put together.
    if (!body?.shapeChecked && !isShapeChecked(received)) assertJsonShape(received);
    // The validators expect numbers where decimals kept their text (1.50).
    const resource = numericView(received).view;
    // A Binary's content is bounded by BINARY_LIMIT / BODY_LIMIT when it arrives, not by the
    // validator's 1 MiB default, which stays for inline attachments of other resources.
    const options = resource.resourceType === 'Binary' ? { base64BinaryMaxBytes: Number.MAX_SAFE_INTEGER } : undefined;
    // Narrative XHTML a browser would run (txt-1) is refused with 422 like a profile failure, and
    // reported by $validate even beside base errors; txt-2 is a warning (narrative-xhtml.ts).
    const narrative = narrativeIssues(resource);
    const base = [
      ...collect(() => validateResource(resource, options)),
      ...this.terminology.validate(resource),
      ...narrative.filter((i) => i.severity !== 'error'),
    ];
    return { resource, base, narrativeErrors: narrative.filter((i) => i.severity === 'error') };
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

function refuseOn({ base, profile }: ValidationIssues): void {
  const errors = base.filter((i) => i.severity === 'error' || i.severity === 'fatal');
  if (errors.length) throw new FhirError(400, errors);
  if (profile.length) throw new FhirError(422, profile);
}
