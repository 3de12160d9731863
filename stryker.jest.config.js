// The unit specs of the modules Stryker mutates (stryker.config.mjs), as one plain jest project:
// the unit project of jest.config.js, narrowed. No database, no e2e global setup.
const { projects } = require('./jest.config.js');
const unit = projects.find((p) => p.displayName === 'unit');

module.exports = {
  ...unit,
  // Transpile only: the mutants are type-checked by Stryker's TypeScript checker, and ts-jest's own
  // per-file type-check would dominate every mutant's run.
  transform: {
    ...unit.transform,
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json', isolatedModules: true }],
  },
  testMatch: [
    '<rootDir>/src/fhir/search/search-request.spec.ts',
    '<rootDir>/src/fhir/search/search-sql.compiler.spec.ts',
    '<rootDir>/src/fhir/pipeline/access-predicate.spec.ts',
    '<rootDir>/src/auth/smart-scope.spec.ts',
    '<rootDir>/src/auth/smart.authorization.spec.ts',
    '<rootDir>/src/common/fhir-date.spec.ts',
  ],
};
