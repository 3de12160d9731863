// Import rules (docs/architecture.md, "Import rules"), checked by `npm run lint` (so by `npm test`):
// - no import circles, type-only imports included (tsPreCompilationDeps): shared types move down
//   into a vocabulary file instead;
// - src/common/ is the bottom layer: it imports nothing from the other src folders (the domain binds
//   what common needs through common's own tokens and abstract classes).
// src/fhir/architecture-rules.spec.ts runs both on fixture files.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'An import circle (type-only imports count): move the shared declarations down into a vocabulary file.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'common-imports-no-domain',
      comment: 'src/common is the bottom layer: it may import only itself and packages; bind what it needs from above. Its unit specs may use test data from elsewhere (the synthetic generator).',
      severity: 'error',
      from: { path: '^src/common/', pathNot: '[.]spec[.]ts$' },
      to: { path: '^src/', pathNot: '^src/common/' },
    },
  ],
  options: {
    tsPreCompilationDeps: true,
    doNotFollow: { path: 'node_modules' },
    exclude: { path: 'node_modules' },
    enhancedResolveOptions: { extensions: ['.ts', '.js', '.json'] },
  },
};
