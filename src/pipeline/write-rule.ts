import type { AccessFragment } from '../fhir/pipeline/access-predicate';
import { denyAll } from '../fhir/pipeline/access-predicate';
import type { Principal } from '../fhir/pipeline/principal';

/**
 * The default write policy in SQL (`custodian-organization`, write-policy.ts), judged with the row
 * lock so it cannot race: who may change a stored resource, on top of being able to read it
 * (docs/security.md, write rule): its custodian organization (set on create, changed only by
 * `$transfer-custodian`), not whoever wrote the last version. Admins maintain the directory and
 * conformance types their role may write (Organization, SearchParameter) whoever authored them.
 * A principal without an organization changes nothing that exists.
 */
export function writeRuleFragments(principal: Principal): AccessFragment[] {
  if (principal.role === 'admin') return [];
  const organization = principal.organization;
  if (!organization) return [denyAll('policy', 'write rule: no organization')];
  return [
    {
      basis: 'policy',
      description: 'write rule: custodian organization',
      render: (alias, bind) => `${alias}.custodian_org = ${bind.bind(organization)}`,
    },
  ];
}
