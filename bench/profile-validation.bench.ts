import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { OperationOutcomeError, validateResource } from '@medplum/core';
import type { OperationOutcomeIssue, Resource } from '@medplum/fhirtypes';
import { ProfileRegistry } from '../src/fhir/validation/profile.registry';
import { writeResults } from './bench-support';

/**
 * Profiles parsed once (issue 23, docs/performance.md). Not part of npm test:
 *   npm run build:bench --silent && npm exec -- node dist-bench/bench/profile-validation.bench.js
 * µs per validation of a small resource, median of BENCH_RUNS runs of BENCH_VALIDATIONS each, in
 * one process: the base R4 validation, the profile step as it was (`validateResource(resource,
 * { profile })`, which parses the StructureDefinition per call) and as it is (`ProfileSchema`,
 * parsed at ProfileRegistry load).
 */
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const VALIDATIONS = Number(process.env.BENCH_VALIDATIONS ?? 500);

const samples: { name: string; profile: string; resource: Resource }[] = [
  {
    name: 'Patient',
    profile: 'http://hie.example.org/fhir/StructureDefinition/hie-patient',
    resource: {
      resourceType: 'Patient',
      identifier: [{ system: 'http://hospital-a.example.org/mrn', value: 'MRN-1' }],
      name: [{ family: 'Müller', given: ['Anna', 'Lena'] }],
      gender: 'female',
      birthDate: '1980-04-01',
      address: [{ line: ['1 Main St'], city: 'Springfield', postalCode: '12345' }],
    },
  },
  {
    name: 'Consent',
    profile: 'http://hie.example.org/fhir/StructureDefinition/hie-consent',
    resource: {
      resourceType: 'Consent',
      status: 'active',
      scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
      category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
      patient: { reference: 'Patient/p1' },
      policyRule: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'OPTOUT' }] },
      provision: { type: 'deny', actor: [{ role: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'IRCP' }] }, reference: { reference: 'Organization/o1' } }] },
    },
  },
];

function issues(run: () => OperationOutcomeIssue[]): OperationOutcomeIssue[] {
  try {
    return run();
  } catch (err) {
    if (err instanceof OperationOutcomeError) return err.outcome.issue;
    throw err;
  }
}

/** µs per call: the median of RUNS timed runs of VALIDATIONS calls (after one untimed run). */
function microseconds(run: () => unknown): { medianUs: number; runsUs: number[] } {
  const once = (): number => {
    const start = process.hrtime.bigint();
    for (let i = 0; i < VALIDATIONS; i++) run();
    return Number(process.hrtime.bigint() - start) / 1000 / VALIDATIONS;
  };
  once();
  const runsUs = Array.from({ length: RUNS }, once).map((us) => Math.round(us * 10) / 10);
  return { medianUs: [...runsUs].sort((a, b) => a - b)[Math.floor(RUNS / 2)], runsUs };
}

function main(): void {
  const loadBefore = loadavg().map((l) => Math.round(l * 100) / 100);
  // Run from the project root (npm exec): the registry's default paths are relative to src/, not dist-bench/.
  const registry = new ProfileRegistry(join(process.cwd(), 'fhir-profiles'), join(process.cwd(), 'config', 'hie-profiles.json'));
  const rows = samples.map(({ name, profile, resource }) => {
    const sd = registry.get(profile)!;
    const schema = registry.schema(profile)!;
    // The two paths must agree before they are compared.
    if (JSON.stringify(issues(() => schema.validate(resource))) !== JSON.stringify(issues(() => validateResource(resource, { profile: sd })))) {
      throw new Error(`${name}: the parsed profile answers differently`);
    }
    return {
      name,
      profile,
      base: microseconds(() => issues(() => validateResource(resource))),
      profileParsedPerCall: microseconds(() => issues(() => validateResource(resource, { profile: sd }))),
      profileParsedOnce: microseconds(() => issues(() => schema.validate(resource))),
    };
  });
  const loadAfter = loadavg().map((l) => Math.round(l * 100) / 100);
  const result = { date: new Date().toISOString(), cpus: cpus().length, node: process.version, runs: RUNS, validations: VALIDATIONS, loadBefore, loadAfter, rows };
  const md = [
    `# Profile validation, parsed per call vs once (issue 23)`,
    '',
    `${result.date}; ${result.cpus} cores, Node ${result.node}; median of ${RUNS} runs of ${VALIDATIONS} validations; load average ${loadBefore.join(' ')} → ${loadAfter.join(' ')}`,
    '',
    '| resource | base R4 µs | profile, parsed per call µs | profile, parsed once µs | ratio |',
    '|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.name} | ${r.base.medianUs} | ${r.profileParsedPerCall.medianUs} | ${r.profileParsedOnce.medianUs} | ${Math.round((r.profileParsedOnce.medianUs / r.profileParsedPerCall.medianUs) * 1000) / 1000} |`,
    ),
    '',
  ].join('\n');
  writeResults(process.env.BENCH_NAME ?? 'profile-validation', result, md);
}

main();
