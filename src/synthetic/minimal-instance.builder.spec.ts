import { OperationOutcomeError, validateResource } from '@medplum/core';
import type { Resource } from '@medplum/fhirtypes';
import { TerminologyBindingValidator } from '../fhir/validation/terminology-binding.validator';
import { buildMinimalInstance, STORABLE_RESOURCE_TYPES } from './minimal-instance.builder';

function problems(resource: Resource): string[] {
  try {
    validateResource(resource);
  } catch (err) {
    if (err instanceof OperationOutcomeError) return err.outcome.issue.map((i) => `${i.expression?.[0]}: ${i.details?.text}`);
    throw err;
  }
  return new TerminologyBindingValidator().validate(resource).map((i) => `${i.expression?.[0]}: ${i.diagnostics}`);
}

describe('minimal instances of every storable type', () => {
  it('enumerates exactly the 144 storable R4 types', () => {
    expect(STORABLE_RESOURCE_TYPES).toHaveLength(144);
    expect(STORABLE_RESOURCE_TYPES).toEqual(expect.arrayContaining(['Patient', 'Bundle', 'Binary', 'SearchParameter', 'Observation']));
    expect(STORABLE_RESOURCE_TYPES).not.toContain('Parameters');
    expect(STORABLE_RESOURCE_TYPES).not.toContain('OperationOutcome');
    expect(STORABLE_RESOURCE_TYPES).not.toContain('SubscriptionStatus');
  });

  it('builds a valid instance, and a different valid variant, for each type', () => {
    const failures: Record<string, string[]> = {};
    for (const type of STORABLE_RESOURCE_TYPES) {
      const v0 = buildMinimalInstance(type, 0);
      const v1 = buildMinimalInstance(type, 1);
      expect(v0.resourceType).toBe(type);
      expect(v1).not.toEqual(v0);
      const p = [...problems(v0), ...problems(v1)];
      if (p.length) failures[type] = p;
    }
    expect(failures).toEqual({});
  });
});
