import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Bundle, Resource } from '@medplum/fhirtypes';
import type { AppConfig } from '../../config/app.config';
import { SyntheticDataGenerator } from '../../synthetic/synthetic-data.generator';
import { FhirDefinitions } from '../definitions/fhir-definitions';
import { hasAnyElement, rootElementsRead } from './search-index.reads';
import { SearchIndexWriter } from './search-index.writer';
import { searchParamsOf } from './search-parameter.registry';

beforeAll(() => FhirDefinitions.get());

/** The R4 examples (one file per resource) and Synthea bundles, where the shared data is present. */
const SHARED = process.env.SHARED_DATA_DIR ?? join(process.cwd(), '..', 'shared', 'data');

/** Up to PER_TYPE resources of each type from the shared R4 examples (Bundles' entries too) and a few Synthea bundles. */
const PER_TYPE = 3;
function sharedResources(): Resource[] {
  const out: Resource[] = [];
  const perType = new Map<string, number>();
  const add = (r: Resource | undefined): void => {
    if (!r?.resourceType) return;
    if (r.resourceType === 'Bundle') for (const e of (r as Bundle).entry ?? []) add(e.resource);
    const n = perType.get(r.resourceType) ?? 0;
    if (n >= PER_TYPE) return;
    perType.set(r.resourceType, n + 1);
    out.push(r);
  };
  for (const dir of ['r4-examples', 'synthea']) {
    const path = join(SHARED, dir);
    if (!existsSync(path)) continue;
    const files = readdirSync(path).filter((f) => f.endsWith('.json')).sort();
    for (const f of dir === 'synthea' ? files.slice(0, 3) : files) add(JSON.parse(readFileSync(join(path, f), 'utf8')) as Resource);
  }
  return out;
}

describe('index extraction skips parameters whose root elements a resource lacks', () => {
  const writer = new SearchIndexWriter({ fhirBaseUrl: 'http://hie/fhir' } as AppConfig);

  it('reads the root elements of plain paths, and nothing for expressions that yield values from nothing', () => {
    const reads = (type: string, code: string): readonly string[] | null => rootElementsRead(searchParamsOf(type).get(code)!, type);
    expect(reads('Observation', 'value-quantity')).toEqual(['value', 'value']);
    expect(reads('Condition', 'onset-age')).toEqual(['onset', 'onset']);
    expect(reads('Patient', 'name')).toEqual(['name']);
    // A composite over the resource is empty when one component is: its last plain component decides.
    expect(reads('Observation', 'code-value-quantity')).toEqual(['value']);
    expect(reads('Observation', 'component-code-value-quantity')).toEqual(['component']);
    expect(reads('Patient', 'deceased')).toBeNull(); // `Patient.deceased.exists() and …`: a boolean from nothing
    expect(hasAnyElement(['resourceType', 'valueQuantity'], ['value'])).toBe(true);
    expect(hasAnyElement(['resourceType', '_birthDate'], ['birthDate'])).toBe(true);
    expect(hasAnyElement(['resourceType', 'code'], ['value'])).toBe(false);
  });

  it('writes exactly the rows full evaluation writes, for every resource of the generator and the shared R4 examples', () => {
    const resources = [...new SyntheticDataGenerator({ seed: 7, patients: 5 }).resources(), ...sharedResources()];
    const types = new Set<string>();
    let rows = 0;
    for (const resource of resources) {
      const skipped = writer.extract(resource);
      const full = writer.extract(resource, true);
      expect({ id: `${resource.resourceType}/${resource.id}`, rows: skipped }).toEqual({ id: `${resource.resourceType}/${resource.id}`, rows: full });
      types.add(resource.resourceType);
      rows += Object.values(full).reduce((n, r) => n + r.length, 0);
    }
    expect(types.size).toBeGreaterThanOrEqual(existsSync(join(SHARED, 'r4-examples')) ? 140 : 8);
    expect(rows).toBeGreaterThan(1000);
  });
});
