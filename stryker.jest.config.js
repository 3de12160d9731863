// The unit specs of the modules Stryker mutates (stryker.config.mjs), as one plain jest project:
// the unit project of jest.config.js, narrowed. No database, no e2e global setup.
const { projects } = require('./jest.config.js');
const modules = require('./stryker.modules.cjs');
const unit = projects.find((p) => p.displayName === 'unit');

module.exports = {
  ...unit,
  // Transpile only: ts-jest's per-file type-check would dominate every mutant's run (`npm test`
  // type-checks the specs).
  transform: {
    ...unit.transform,
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json', isolatedModules: true }],
  },
  // STRYKER_MODULE (stryker.config.mjs) narrows the run to that module's own specs.
  testMatch: (process.env.STRYKER_MODULE ? [modules[process.env.STRYKER_MODULE]] : Object.values(modules))
    .flatMap((m) => m.specs)
    .map((spec) => `<rootDir>/${spec}`),
};
