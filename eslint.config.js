// Architecture rules (docs/architecture.md): the safe path is the only path.
// - Only storage and search (src/fhir/storage, src/fhir/search) run SQL on the resource, history and
//   search index tables; everything else reaches them through the pipeline's AccessContext.
// - Nothing else under src/fhir injects the DataSource; other modules reach their own tables
//   (clients, keys, rate limits, audit) through their own repositories.
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
    { name: 'typeorm', importNames: ['DataSource'], message: 'Under src/fhir only storage and search hold the DataSource; take an AccessContext and the pipeline’s session instead.' },
    { name: '@nestjs/typeorm', importNames: ['InjectDataSource', 'getDataSourceToken', 'InjectEntityManager'], message: 'Under src/fhir only storage and search inject the DataSource; take an AccessContext and the pipeline’s session instead.' },
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
    files: ['src/fhir/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', dataSourceImports],
    },
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
