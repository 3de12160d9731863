// Two projects: fast unit specs beside the code, and e2e tests under test/ on one real PostgreSQL
// started by globalSetup (embedded unless DATABASE_URL is set), which also migrates a template
// database once; every e2e file then gets its own copy of it (setupFiles), so files run in parallel.
// See docs/testing.md.
//
// NestJS 12, jose and a few others ship ESM only. Node 22 loads them from our CommonJS build via
// require(esm), but Jest's module registry cannot (before Node 24.9), so Jest transpiles those
// packages to CommonJS with ts-jest. The list is computed from package.json "type", so it follows
// upgrades without a hand-kept allowlist.
const fs = require('node:fs');
const path = require('node:path');

// The nearest node_modules up from here: a Stryker sandbox (.stryker-tmp/sandbox-*) has none of its
// own when the project's node_modules is a symlink, and resolves packages from the project's.
function nearestNodeModules(from = __dirname) {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'node_modules');
    if (fs.existsSync(candidate) || path.dirname(dir) === dir) return candidate;
  }
}

function esmPackages(dir = nearestNodeModules(), prefix = '') {
  const names = [];
  for (const name of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
    if (name.startsWith('.')) continue;
    if (name.startsWith('@')) {
      names.push(...esmPackages(path.join(dir, name), `${name}/`));
      continue;
    }
    try {
      const pkg = JSON.parse(fs.readFileSync(path.join(dir, name, 'package.json'), 'utf8'));
      if (pkg.type === 'module') names.push(prefix + name);
    } catch {
      /* not a package */
    }
  }
  return names;
}

const escaped = esmPackages().map((n) => n.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&'));
const base = {
  moduleFileExtensions: ['js', 'mjs', 'cjs', 'json', 'ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }],
    '^.+/node_modules/.+\\.m?js$': '<rootDir>/test/support/esm-dependency.transformer.js',
  },
  transformIgnorePatterns: [`/node_modules/(?!(${escaped.join('|')})/)`],
  testEnvironment: 'node',
  // Stryker's sandboxes (a copy of the project, package.json included) while a mutation run is on.
  modulePathIgnorePatterns: ['<rootDir>/.stryker-tmp/'],
};

module.exports = {
  reporters: ['default', '<rootDir>/test/support/ci-summary.reporter.js'],
  // e2e hooks boot the whole app and load data; with files in parallel on a loaded 2-core machine
  // that can take far more than Jest's 5 s.
  testTimeout: 120_000,
  projects: [
    { ...base, displayName: 'unit', rootDir: '.', testMatch: ['<rootDir>/src/**/*.spec.ts'] },
    {
      ...base,
      displayName: 'e2e',
      rootDir: '.',
      testMatch: ['<rootDir>/test/**/*.e2e-spec.ts'],
      globalSetup: '<rootDir>/test/global-setup.ts',
      globalTeardown: '<rootDir>/test/global-teardown.ts',
      setupFiles: ['<rootDir>/test/support/file-database.setup.ts'],
    },
  ],
};
