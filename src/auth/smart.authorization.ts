import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '../config/app.config';
import { FhirError } from '../common/fhir-error';
import { Interaction, InteractionKind, interactionVerb } from '../fhir/pipeline/interaction';
import { AccessFragment, denyAll } from '../fhir/pipeline/access-predicate';
import { AuthorizationStage } from '../fhir/pipeline/pipeline.stages';
import type { HieRole, Principal } from '../fhir/pipeline/principal';
import { scopeRestrictionFragment } from './scope-restriction';
import { parseSmartScope, scopeAllows, SmartScope } from './smart-scope';

/** Resource types each non-clinical role may touch at all, with the verbs it may use on each; everything else is denied to it. */
const ROLE_TYPES: Record<Exclude<HieRole, 'hospital'>, ReadonlyMap<string, string>> = {
  auditor: new Map([['AuditEvent', 'rs']]),
  admin: new Map([['Organization', 'cruds'], ['SearchParameter', 'cruds']]),
  // The statistics' Measure definitions ($evaluate-measure); the agency's own work items (case-report
  // Tasks, of which it is custodian: the write policy and AGENCY_OWN_TASKS bound them) and its
  // Subscriptions to them (docs/public-health.md). Patient data only with clinical access.
  'public-health': new Map([['Measure', 'rs'], ['Task', 'rsu'], ['Subscription', 'cruds']]),
};
/** What a public-health client with clinical access may do besides reading and searching patient data. */
const PUBLIC_HEALTH_WORK = new Map([['Task', 'u'], ['Subscription', 'cud']]);
/**
 * Records of access: only auditors search them. A hospital may submit AuditEvents of its own
 * systems (IHE ATNA style) and work with them by id, but cannot discover others' by search.
 */
const AUDIT_TYPES = new Set(['AuditEvent']);
/**
 * Conformance resources that change how the whole exchange behaves (a SearchParameter changes what
 * every write indexes): clinical roles may read them, only admins write them.
 */
const ADMIN_WRITTEN_TYPES = new Set(['SearchParameter']);
/** What a scope restricted by a query (`system/Observation.rs?category=laboratory`) can allow. */
const RESTRICTABLE_KINDS = new Set<InteractionKind>(['read', 'search-type', 'search-compartment']);

/**
 * Default deny: an interaction passes only when the client's role allows that kind of data AND a
 * granted SMART scope covers the type and verb. ETREAT (break-the-glass) also needs a reason.
 */
@Injectable()
export class SmartAuthorization extends AuthorizationStage {
  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {
    super();
  }

  authorize(principal: Principal, interaction: Interaction): readonly AccessFragment[] {
    if (interaction.kind === 'capabilities') return [];
    if (principal.kind !== 'client' || !principal.role) throw FhirError.unauthorized('A valid bearer token is required');
    if (principal.purposeOfUse === 'ETREAT' && !principal.breakGlassReason?.trim()) {
      throw FhirError.forbidden('Break-the-glass access (purpose ETREAT) needs a reason in the X-Break-Glass-Reason header');
    }
    if (interaction.kind === 'batch' || interaction.kind === 'transaction') {
      // Each entry is authorized on its own; the Bundle itself needs a role that may write records.
      if (principal.role !== 'hospital') throw this.denied(principal, 'submit batch or transaction Bundles');
      return [];
    }
    if (interaction.kind === 'operation') {
      // Each operation declares the roles and scopes that may invoke it; the pipeline resolved it
      // (an unknown operation is 404 not-supported before it gets here).
      const declared = interaction.operationDeclaration;
      if (!declared) throw new FhirError(404, 'not-supported', `Operation $${(interaction.operation ?? '').slice(0, 64)} is not supported by this server`);
      if (!declared.roles.includes(principal.role)) throw this.denied(principal, `invoke $${declared.name}`);
      const scopes = principal.scopes.map(parseSmartScope).filter((s): s is SmartScope => !!s);
      for (const needed of declared.scopes) {
        const [t, verb] = needed.split('.');
        const type = t === '{type}' ? interaction.resourceType : t === '*' ? undefined : t;
        if (!scopes.some((s) => !s.restrictions.length && scopeAllows(s, type, verb))) {
          throw new FhirError(403, 'forbidden', `$${declared.name} needs a granted scope allowing system/${type ?? '*'}.${verb}`);
        }
      }
      return [];
    }
    const type = interaction.resourceType;
    const verb = interactionVerb(interaction.kind);
    if (!this.roleAllows(principal, type, verb)) {
      throw this.denied(principal, `${describe(verb)} ${type ?? 'across all types'}`);
    }
    const scopes = principal.scopes.map(parseSmartScope).filter((s): s is SmartScope => !!s);
    const allowing = scopes.filter((s) => scopeAllows(s, type, verb));
    if (!allowing.length) {
      throw new FhirError(403, 'forbidden', `No granted scope allows ${describe(verb)} ${type ?? 'across all types'} (system/${type ?? '*'}.${verb})`);
    }
    if (allowing.every((s) => s.restrictions.length) && !RESTRICTABLE_KINDS.has(interaction.kind)) {
      // Scope queries are evaluated on current index rows: they can bound reads and searches, not
      // writes or old versions, so those need an unrestricted scope.
      throw new FhirError(403, 'forbidden', `Granted scope ${allowing[0].raw.slice(0, 120)} limits ${type} to matching resources and allows only read and search, not ${interaction.kind}`);
    }
    const restriction = verb === 'r' || verb === 's' ? this.restriction(scopes, verb) : undefined;
    return [...(restriction ? [restriction] : []), ...agencyOwnTasks(principal, type)];
  }

  /** Types this principal may read or search only through restricted scopes, as one fragment. */
  private restriction(scopes: SmartScope[], verb: 'r' | 's'): AccessFragment | undefined {
    const restricted = new Map<string, SmartScope[]>();
    for (const s of scopes) {
      if (!s.restrictions.length || !s.verbs.has(verb)) continue;
      if (scopes.some((u) => !u.restrictions.length && scopeAllows(u, s.resourceType, verb))) continue;
      restricted.set(s.resourceType, [...(restricted.get(s.resourceType) ?? []), s]);
    }
    return scopeRestrictionFragment(restricted, this.config.fhirBaseUrl);
  }

  private roleAllows(principal: Principal, type: string | undefined, verb: string): boolean {
    const role = principal.role!;
    if (role === 'hospital') return !type || ((!AUDIT_TYPES.has(type) || 'cr'.includes(verb)) && (!ADMIN_WRITTEN_TYPES.has(type) || 'rs'.includes(verb)));
    if (role === 'public-health' && principal.clinicalAccess) {
      if (verb === 'r' || verb === 's') return !type || !AUDIT_TYPES.has(type);
      return !!type && !!PUBLIC_HEALTH_WORK.get(type)?.includes(verb);
    }
    return !!type && !!ROLE_TYPES[role].get(type)?.includes(verb);
  }

  private denied(principal: Principal, what: string): FhirError {
    return FhirError.forbidden(`The ${principal.role} role may not ${what}`);
  }
}

/**
 * A public-health client without clinical access reads Tasks (a patient-compartment type) only
 * where its organization is the custodian: the case-report Tasks it works, never a hospital's.
 * Writes are bounded by the default write policy (the custodian) already.
 */
function agencyOwnTasks(principal: Principal, type: string | undefined): AccessFragment[] {
  if (principal.role !== 'public-health' || principal.clinicalAccess || type !== 'Task') return [];
  const organization = principal.organization;
  if (!organization) return [denyAll('policy', 'public health without clinical access: no organization')];
  return [{ basis: 'policy', description: 'public health without clinical access: its own Tasks', render: (alias, bind) => `${alias}.custodian_org = ${bind.bind(organization)}` }];
}

function describe(verb: string): string {
  return { c: 'create', r: 'read', u: 'update', d: 'delete', s: 'search', x: 'use' }[verb] ?? verb;
}
