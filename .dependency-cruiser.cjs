// Import rules (docs/architecture.md, "Import rules"), checked by `npm run lint` (so by `npm test`):
// - no import circles, type-only imports included (tsPreCompilationDeps): shared types move down
//   into a vocabulary file instead;
// - src/common/ is the bottom layer: it imports nothing from the other src folders (the domain binds
//   what common needs through common's own tokens and abstract classes).
// - the layers (docs/architecture.md, "Layers"): the records core imports no policy module; the
//   policy modules (auth, consent, audit, jobs) import the pipeline's vocabulary, never its
//   orchestration (only their HTTP controllers sit above it); the exchange modules (referrals,
//   public-health, identity) are imported by nobody but the app module.
// src/fhir/architecture-rules.spec.ts runs the first two on fixture files.
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
    {
      name: 'records-core-imports-no-policy',
      comment: 'Storage, search, definitions and validation are the records core: below auth, consent, audit, jobs and the exchange modules.',
      severity: 'error',
      from: { path: '^src/fhir/(storage|search|definitions|validation|response)/' },
      to: { path: '^src/(auth|consent|audit|jobs|referrals|public-health|identity)/' },
    },
    {
      name: 'records-core-below-orchestration',
      comment: 'The records core never reaches up to the pipeline orchestration, the REST layer, operations or the Bundle processor.',
      severity: 'error',
      from: { path: '^src/fhir/(storage|search|definitions|validation)/' },
      to: { path: '^src/fhir/(pipeline/(fhir-pipeline[.]service|interaction[.]executor)[.]ts$|rest/|operations/|transaction/)' },
    },
    {
      name: 'policy-below-orchestration',
      comment: 'auth, consent, audit and jobs speak the pipeline vocabulary; only their HTTP controllers sit above FhirPipeline.',
      severity: 'error',
      from: { path: '^src/(auth|consent|audit|jobs)/', pathNot: '[.]controller[.]ts$' },
      to: { path: '^src/fhir/pipeline/(fhir-pipeline[.]service|interaction[.]executor)[.]ts$' },
    },
    {
      name: 'exchange-modules-on-top',
      comment: 'referrals, public-health and identity plug into the extension points; nothing below imports them (the app module wires them).',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/(app[.]module[.]ts$|referrals/|public-health/|identity/)' },
      to: { path: '^src/(referrals|public-health|identity)/' },
    },
  ],
  options: {
    tsPreCompilationDeps: true,
    doNotFollow: { path: 'node_modules' },
    exclude: { path: 'node_modules' },
    enhancedResolveOptions: { extensions: ['.ts', '.js', '.json'] },
  },
};
