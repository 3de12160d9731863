import { OperationOutcomeError, validateResource } from '@medplum/core';
import type { Patient, Resource } from '@medplum/fhirtypes';
import { FhirDefinitions } from '../fhir/definitions/fhir-definitions';
import { TerminologyBindingValidator } from '../fhir/validation/terminology-binding.validator';
import { DISTRICTS, SyntheticDataGenerator } from './synthetic-data.generator';

describe('SyntheticDataGenerator', () => {
  FhirDefinitions.get();
  const generate = (seed: number, patients = 20) => [...new SyntheticDataGenerator({ seed, patients }).resources()];

  it('is deterministic for a seed and differs across seeds', () => {
    expect(generate(7)).toEqual(generate(7));
    expect(generate(8)).not.toEqual(generate(7));
  });

  it('keeps patient n the same whatever the patient count', () => {
    const small = generate(3, 2).filter((r) => r.id?.startsWith('syn-pat-1'));
    const large = generate(3, 5).filter((r) => r.id?.startsWith('syn-pat-1'));
    expect(large).toEqual(small);
  });

  it('produces the directory and a record per patient', () => {
    const resources = generate(42, 20);
    const count = (type: string) => resources.filter((r) => r.resourceType === type).length;
    expect(count('Organization')).toBe(5); // 3 hospitals + 2 payers
    expect(count('Practitioner')).toBe(5);
    expect(count('Patient')).toBe(20);
    expect(count('Encounter')).toBeGreaterThanOrEqual(40);
    expect(count('Observation')).toBeGreaterThanOrEqual(120);
    for (const type of ['Condition', 'Immunization', 'Coverage']) expect(count(type)).toBeGreaterThan(0);
  });

  it('makes patients with several identifiers, several given names, accents and districts', () => {
    const patients = generate(42, 50).filter((r): r is Patient => r.resourceType === 'Patient');
    expect(patients.every((p) => (p.identifier?.length ?? 0) >= 2)).toBe(true);
    expect(patients.some((p) => (p.identifier?.length ?? 0) >= 3)).toBe(true);
    expect(patients.some((p) => (p.name?.[0].given?.length ?? 0) >= 2)).toBe(true);
    expect(patients.some((p) => /[^\x00-\x7F]/.test(JSON.stringify(p.name)))).toBe(true);
    const districts = new Set(patients.map((p) => p.address?.[0].district));
    expect(districts.size).toBeGreaterThanOrEqual(3);
    expect([...districts].every((d) => (DISTRICTS as readonly string[]).includes(d!))).toBe(true);
  });

  it('generates only valid resources whose references resolve within the set', () => {
    const resources = generate(5, 30);
    const ids = new Set(resources.map((r) => `${r.resourceType}/${r.id}`));
    const terminology = new TerminologyBindingValidator();
    const problems: string[] = [];
    for (const r of resources) {
      try {
        validateResource(r);
      } catch (err) {
        if (!(err instanceof OperationOutcomeError)) throw err;
        problems.push(`${r.resourceType}/${r.id}: ${err.message}`);
      }
      for (const issue of terminology.validate(r)) problems.push(`${r.resourceType}/${r.id}: ${issue.diagnostics}`);
      JSON.stringify(r, (key, value) => {
        if (key === 'reference' && !ids.has(value)) problems.push(`${r.resourceType}/${r.id}: dangling ${value}`);
        return value;
      });
    }
    expect(problems).toEqual([]);
  });

  it('wraps the same resources in transaction Bundles of PUTs', () => {
    const gen = new SyntheticDataGenerator({ seed: 9, patients: 3 });
    const bundles = [...gen.transactionBundles()];
    expect(bundles).toHaveLength(4);
    const fromBundles: Resource[] = bundles.flatMap((b) => b.entry!.map((e) => e.resource!));
    expect(fromBundles).toEqual([...gen.resources()]);
    expect(bundles[1].entry![0].request).toEqual({ method: 'PUT', url: 'Patient/syn-pat-0' });
  });
});
