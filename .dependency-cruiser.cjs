// Import rules (docs/architecture.md, "Import rules"), checked by `npm run lint` (so by `npm test`):
// - no import circles, type-only imports included (tsPreCompilationDeps): shared types move down
//   into a vocabulary file instead;
// - src/common/ is the bottom layer: it imports nothing from the other src folders (the domain binds
//   what common needs through common's own tokens and abstract classes).
// - the layers (docs/architecture.md, "Layers"): the records core imports no policy module; the
//   records core, the vocabulary (src/fhir/pipeline) and the policy modules (auth, consent, audit,
//   jobs) never import the orchestration (src/pipeline) or the controllers (src/rest); the
//   orchestration imports neither the controllers nor the exchange modules; the exchange modules
//   (referrals, public-health, identity) are imported by nobody but the app module.
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
      from: { path: '^src/fhir/', pathNot: '[.]spec[.]ts$' },
      to: { path: '^src/(auth|consent|audit|jobs|referrals|public-health|identity)/' },
    },
    {
      name: 'records-core-below-orchestration',
      comment: 'The records core and the vocabulary (src/fhir) never reach up to the orchestration (src/pipeline) or the controllers (src/rest); an operation asks for system access through the vocabulary’s SystemAccess.',
      severity: 'error',
      from: { path: '^src/fhir/' },
      to: { path: '^src/(pipeline|rest)/' },
    },
    {
      name: 'policy-below-orchestration',
      comment: 'auth, consent, audit and jobs speak the pipeline vocabulary (src/fhir/pipeline); their HTTP controllers live in src/rest.',
      severity: 'error',
      from: { path: '^src/(auth|consent|audit|jobs|common|config|database)/' },
      to: { path: '^src/(pipeline|rest)/' },
    },
    {
      name: 'orchestration-below-rest-and-modules',
      comment: 'The pipeline orchestrates; the controllers (src/rest) and the exchange modules sit on it, never under it.',
      severity: 'error',
      from: { path: '^src/pipeline/' },
      to: { path: '^src/(rest|referrals|public-health|identity)/' },
    },
    {
      name: 'access-issuer-in-pipeline-only',
      comment: 'Only the orchestration creates AccessContexts (the issuer is claimed once, in src/pipeline/access-issuer.ts).',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/pipeline/' },
      to: { path: '^src/pipeline/access-issuer[.]ts$' },
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
