// Mutation testing of the pure modules against their unit specs only (docs/testing.md). Not part
// of `npm test` or CI: `npm run test:mutation` runs every module; `STRYKER_MODULE=fhir-date npm run
// test:mutation` runs one (names in stryker.modules.cjs) against its own specs, with its own
// incremental file, so a rerun tests only the mutants whose code or covering tests changed.
import { createRequire } from 'node:module';

const modules = createRequire(import.meta.url)('./stryker.modules.cjs');
const only = process.env.STRYKER_MODULE;
if (only && !modules[only]) throw new Error(`STRYKER_MODULE must be one of ${Object.keys(modules).join(', ')}`);
const selected = only ? [modules[only]] : Object.values(modules);

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: 'jest',
  jest: { projectType: 'custom', configFile: 'stryker.jest.config.js', enableFindRelatedTests: false },
  mutate: selected.map((m) => m.mutate),
  // No TypeScript checker: a whole-project type-check per mutant group costs more on this machine
  // than running the few mutants that would not compile (they run transpile-only and are killed or
  // listed as survivors like any other).
  coverageAnalysis: 'perTest',
  incremental: true,
  incrementalFile: `reports/mutation/incremental-${only ?? 'all'}.json`,
  concurrency: 1,
  timeoutMS: 60_000,
  reporters: ['clear-text', 'progress', 'html', 'json'],
  htmlReporter: { fileName: `reports/mutation/${only ?? 'all'}.html` },
  jsonReporter: { fileName: `reports/mutation/${only ?? 'all'}.json` },
  tempDirName: '.stryker-tmp',
  cleanTempDir: true,
};
