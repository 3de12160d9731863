import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { ElementDefinition, StructureDefinition } from '@medplum/fhirtypes';
import { FhirDefinitions } from '../definitions/fhir-definitions';
import { ProfileSchema } from './profile-schema';

// src/fhir/validation and dist/fhir/validation are both three levels below the project root.
const PROJECT_ROOT = resolve(__dirname, '..', '..', '..');

interface ProfileConfig {
  requiredProfiles?: Record<string, string[]>;
}

/**
 * The conformance profiles of this HIE: StructureDefinitions shipped in fhir-profiles/ and the
 * per-type requirements in config/hie-profiles.json. Loaded once at start, each profile parsed
 * into its validation schema then (ProfileSchema); immutable afterwards.
 */
export class ProfileRegistry {
  private readonly byUrl = new Map<string, ProfileSchema>();
  private readonly required = new Map<string, string[]>();

  constructor(profileDir = join(PROJECT_ROOT, 'fhir-profiles'), configFile = join(PROJECT_ROOT, 'config', 'hie-profiles.json')) {
    FhirDefinitions.get();
    for (const file of readdirSync(profileDir).filter((f) => f.endsWith('.json')).sort()) {
      const sd = JSON.parse(readFileSync(join(profileDir, file), 'utf8')) as StructureDefinition;
      if (sd.resourceType !== 'StructureDefinition') continue;
      this.byUrl.set(sd.url, new ProfileSchema(withSnapshot(sd)));
    }
    const config = JSON.parse(readFileSync(configFile, 'utf8')) as ProfileConfig;
    for (const [type, urls] of Object.entries(config.requiredProfiles ?? {})) {
      for (const url of urls) {
        if (!this.byUrl.has(url)) throw new Error(`config/hie-profiles.json requires unknown profile ${url} for ${type}`);
      }
      this.required.set(type, urls);
    }
  }

  get(url: string): StructureDefinition | undefined {
    return this.schema(url)?.definition;
  }

  /** The profile parsed for validation (a version suffix `|x` is ignored, as by `get`). */
  schema(url: string): ProfileSchema | undefined {
    return this.byUrl.get(url.split('|')[0]);
  }

  requiredFor(resourceType: string): string[] {
    return this.required.get(resourceType) ?? [];
  }

  all(): StructureDefinition[] {
    return [...this.byUrl.values()].map((p) => p.definition);
  }
}

const OVERRIDABLE: (keyof ElementDefinition)[] = ['min', 'max', 'mustSupport', 'binding', 'short', 'definition', 'constraint'];

/**
 * Constraint profiles here are written as differentials (min/max/mustSupport/binding on existing
 * paths, no slicing); the validator needs a snapshot, so we merge the differential onto the base.
 */
function withSnapshot(sd: StructureDefinition): StructureDefinition {
  if (sd.snapshot?.element?.length) return sd;
  const base = FhirDefinitions.get().structureDefinition(sd.baseDefinition ?? '');
  if (!base?.snapshot?.element) throw new Error(`Profile ${sd.url}: unknown base ${sd.baseDefinition}`);
  const diff = new Map<string, ElementDefinition>();
  for (const el of sd.differential?.element ?? []) {
    if (el.sliceName) throw new Error(`Profile ${sd.url}: slicing is not supported in fhir-profiles/ (${el.id})`);
    diff.set(el.path as string, el);
  }
  let element = [...base.snapshot.element];
  // Constraints on a data type's children (Patient.identifier.system) need that type's elements
  // unfolded under the parent, as a full snapshot generator would.
  for (const path of [...diff.keys()].sort()) {
    if (element.some((el) => el.path === path)) continue;
    const parentPath = path.substring(0, path.lastIndexOf('.'));
    const parentIndex = element.findIndex((el) => el.path === parentPath);
    const typeCode = parentIndex >= 0 ? element[parentIndex].type?.[0]?.code : undefined;
    const typeSd = typeCode ? FhirDefinitions.get().structureDefinition(`http://hl7.org/fhir/StructureDefinition/${typeCode}`) : undefined;
    if (!typeSd?.snapshot?.element) {
      throw new Error(`Profile ${sd.url}: differential path ${path} is not in ${sd.baseDefinition}`);
    }
    const children = typeSd.snapshot.element.slice(1).map((el) => ({
      ...el,
      id: parentPath + (el.id as string).substring(typeCode!.length),
      path: parentPath + (el.path as string).substring(typeCode!.length),
    }));
    element = [...element.slice(0, parentIndex + 1), ...children, ...element.slice(parentIndex + 1)];
  }
  element = element.map((el) => {
    const d = diff.get(el.path as string);
    if (!d) return el;
    const merged: ElementDefinition = { ...el };
    for (const key of OVERRIDABLE) {
      if (d[key] !== undefined) (merged as unknown as Record<string, unknown>)[key] = d[key];
    }
    return merged;
  });
  return { ...sd, snapshot: { element } };
}
