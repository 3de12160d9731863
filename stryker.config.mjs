// Mutation testing of the pure modules against their unit specs only (docs/testing.md). Not part
// of `npm test` or CI: run `npm run test:mutation` (several minutes on a busy 2-core machine).
/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: 'jest',
  jest: { projectType: 'custom', configFile: 'stryker.jest.config.js', enableFindRelatedTests: false },
  mutate: [
    'src/fhir/search/search-request.ts',
    'src/fhir/search/search-sql.compiler.ts',
    'src/auth/smart-scope.ts',
    'src/auth/smart.authorization.ts',
    'src/common/fhir-date.ts',
  ],
  checkers: ['typescript'],
  tsconfigFile: 'tsconfig.json',
  typescriptChecker: { prioritizePerformanceOverAccuracy: true },
  coverageAnalysis: 'perTest',
  concurrency: 1,
  timeoutMS: 60_000,
  reporters: ['clear-text', 'progress', 'html', 'json'],
  htmlReporter: { fileName: 'reports/mutation/mutation.html' },
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  tempDirName: '.stryker-tmp',
  cleanTempDir: true,
};
