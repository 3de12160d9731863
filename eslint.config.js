// Architecture rules (docs/architecture.md): the safe path is the only path.
// - Only storage and search (src/fhir/storage, src/fhir/search) run SQL on the resource, history and
//   search index tables; everything else reaches them through the pipeline's AccessContext.
// - Nothing else under src/fhir, nor the orchestration (src/pipeline), the controllers (src/rest)
//   or the exchange modules outside their *.repository.ts files injects the DataSource; modules
//   reach their own tables (clients, keys, rate limits, audit, export jobs) through repositories.
// Lint is syntax-only (no type information): fast enough to run in every `npm test`.
const tseslint = require('typescript-eslint');

const RESOURCE_TABLE_SQL = String.raw`/\b(?:FROM|JOIN|INTO|UPDATE|TABLE)\s+(?:ONLY\s+)?(?:resource|resource_history|search_[a-z_]+)\b/i`;
const resourceSqlSelectors = [
  {
    selector: `Literal[value=${RESOURCE_TABLE_SQL}]`,
    message: 'SQL on the resource, history or search index tables belongs in src/fhir/storage or src/fhir/search (through an AccessContext).',
  },
  {
    selector: `TemplateElement[value.raw=${RESOURCE_TABLE_SQL}]`,
    message: 'SQL on the resource, history or search index tables belongs in src/fhir/storage or src/fhir/search (through an AccessContext).',
  },
];

const dataSourceImports = {
  paths: [
    { name: 'typeorm', importNames: ['DataSource'], message: 'Only storage and search (and a module’s own *.repository.ts) hold the DataSource; take an AccessContext and the pipeline’s session instead.' },
    { name: '@nestjs/typeorm', importNames: ['InjectDataSource', 'getDataSourceToken', 'InjectEntityManager'], message: 'Only storage and search (and a module’s own *.repository.ts) inject the DataSource; take an AccessContext and the pipeline’s session instead.' },
  ],
};

module.exports = [
  { ignores: ['dist/**', 'dist-audit-test-*/**', 'dist-bench/**', 'node_modules/**', 'data/**', 'coverage/**'] },
  {
    files: ['src/**/*.ts'],
    languageOptions: { parser: tseslint.parser, parserOptions: { sourceType: 'module' } },
    plugins: { '@typescript-eslint': tseslint.plugin },
    rules: {
      'no-restricted-syntax': ['error', ...resourceSqlSelectors],
    },
  },
  {
    // Everything that must reach storage through an AccessContext: the records core's other
    // folders, the vocabulary, the orchestration, the controllers and the exchange modules.
    files: ['src/fhir/**/*.ts', 'src/pipeline/**/*.ts', 'src/rest/**/*.ts', 'src/referrals/**/*.ts', 'src/public-health/**/*.ts', 'src/identity/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', dataSourceImports],
    },
  },
  {
    // An exchange module's own tables (export jobs, link decisions) are reached by its repositories.
    files: ['src/referrals/**/*.repository.ts', 'src/public-health/**/*.repository.ts', 'src/identity/**/*.repository.ts'],
    rules: { 'no-restricted-imports': 'off' },
  },
  {
    // Unit specs assert on the SQL storage and search render.
    files: ['src/**/*.spec.ts'],
    rules: { 'no-restricted-syntax': 'off' },
  },
  {
    // The two places that own the resource tables.
    files: ['src/fhir/storage/**/*.ts', 'src/fhir/search/**/*.ts'],
    rules: {
      'no-restricted-syntax': 'off',
      'no-restricted-imports': 'off',
    },
  },
];
