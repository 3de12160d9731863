import type { AccessFragment } from './access-predicate';
import { denyAll } from './access-predicate';
import type { Principal } from './principal';

/**
 * Who may change a stored resource, on top of being able to read it (docs/security.md, write rule):
 * the organization that authored its current version. Admins maintain the directory and
 * conformance types their role may write (Organization, SearchParameter) whoever authored them.
 * A principal without an organization changes nothing that exists.
 */
export function writeRuleFragments(principal: Principal): AccessFragment[] {
  if (principal.role === 'admin') return [];
  const organization = principal.organization;
  if (!organization) return [denyAll('policy', 'write rule: no authoring organization')];
  return [
    {
      basis: 'policy',
      description: 'write rule: authoring organization',
      render: (alias, bind) => `${alias}.author_org = ${bind.bind(organization)}`,
    },
  ];
}
