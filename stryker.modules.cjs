// The pure modules Stryker mutates, each with the unit specs that test it (docs/testing.md).
// `STRYKER_MODULE=<name> npx stryker run` mutates one module against its own specs only: each
// mutant run then loads one or two spec files instead of all of them (the compiler's specs load the
// R4 definitions, seconds per run on a loaded machine).
module.exports = {
  'fhir-date': { mutate: 'src/common/fhir-date.ts', specs: ['src/common/fhir-date.spec.ts'] },
  'smart-scope': { mutate: 'src/auth/smart-scope.ts', specs: ['src/auth/smart-scope.spec.ts'] },
  'smart-authorization': { mutate: 'src/auth/smart.authorization.ts', specs: ['src/auth/smart.authorization.spec.ts'] },
  'access-predicate': { mutate: 'src/fhir/pipeline/access-predicate.ts', specs: ['src/fhir/pipeline/access-predicate.spec.ts'] },
  'search-request': { mutate: 'src/fhir/search/search-request.ts', specs: ['src/fhir/search/search-request.spec.ts'] },
  'search-sql': { mutate: 'src/fhir/search/search-sql.compiler.ts', specs: ['src/fhir/search/search-sql.compiler.spec.ts'] },
  'referral-state-machine': { mutate: 'src/referrals/referral-state-machine.ts', specs: ['src/referrals/referral-state-machine.spec.ts'] },
  'referral-write-rules': { mutate: 'src/referrals/referral-write-rules.ts', specs: ['src/referrals/referral-write-rules.spec.ts'] },
  'referral-write-policy': { mutate: 'src/referrals/referral.write-policy.ts', specs: ['src/referrals/referral.write-policy.spec.ts'] },
  'consent-sql': { mutate: 'src/consent/consent-sql.ts', specs: ['src/consent/consent-sql.spec.ts'] },
  'consent-provisions': { mutate: 'src/consent/consent-provisions.ts', specs: ['src/consent/consent-provisions.spec.ts'] },
  // The default write policy ("the custodian organization may write"), rendered in SQL.
  'default-write-policy': { mutate: 'src/pipeline/write-rule.ts', specs: ['src/pipeline/write-rule.spec.ts'] },
  'scope-restriction': { mutate: 'src/auth/scope-restriction.ts', specs: ['src/auth/scope-restriction.spec.ts'] },
  'audit-event-builder': { mutate: 'src/audit/audit-event.builder.ts', specs: ['src/audit/audit-event.builder.spec.ts'] },
  'fhir-json': { mutate: 'src/common/fhir-json.ts', specs: ['src/common/fhir-json.spec.ts'] },
};
