import {
  getAllDataTypes,
  type InternalTypeSchema,
  isResourceType,
  OperationOutcomeError,
  parseStructureDefinition,
  validateResource,
  validateTypedValue,
  validationError,
} from '@medplum/core';
import type { OperationOutcomeIssue, Resource, StructureDefinition } from '@medplum/fhirtypes';

/**
 * A conformance profile (a StructureDefinition with a snapshot) parsed once into @medplum/core's
 * validation schema. `validateResource(resource, { profile })` parses the profile on every call
 * (~1.4 ms for hie-patient, 20x the base validation of a small Patient); this answers the same
 * issues from the schema parsed here, at ProfileRegistry load.
 *
 * @medplum/core's public API takes a profile only as a StructureDefinition; a parsed schema it finds
 * only by name, in its data-type map (`getAllDataTypes()`, the map `loadDataType` fills). So the
 * schema is entered under the profile's canonical URL for the one synchronous validation call and
 * removed in `finally`: no other code runs meanwhile (the worker thread has its own module copy),
 * so `isResourceType` and `getResourceTypes` never see the name, and a contained or Bundle-entry
 * resource claiming it as its resourceType fails the base validation, which runs first and
 * without it. A URL already in the map is refused rather than shadowed.
 */
export class ProfileSchema {
  private readonly schema: InternalTypeSchema;

  constructor(readonly definition: StructureDefinition) {
    this.schema = parseStructureDefinition(definition);
  }

  /** The issues of `validateResource(resource, { profile: definition })`: returned, or thrown (errors) as it does. */
  validate(resource: Resource): OperationOutcomeIssue[] {
    if (resource.resourceType !== this.definition.type) {
      // A profile of another type ($validate?profile= on any type): the root would be read by the
      // profile's elements rather than its own type's; rare, so it keeps @medplum/core's own path.
      return validateResource(resource, { profile: this.definition });
    }
    // As validateResource does before validating.
    if (!isResourceType(resource.resourceType)) throw new OperationOutcomeError(validationError('Invalid resource type'));
    const dataTypes = getAllDataTypes();
    const name = this.definition.url;
    if (Object.hasOwn(dataTypes, name)) throw new Error(`Profile ${name}: a data type of that name is already loaded`);
    dataTypes[name] = this.schema;
    try {
      return validateTypedValue({ type: name, value: resource });
    } finally {
      Reflect.deleteProperty(dataTypes, name);
    }
  }
}
