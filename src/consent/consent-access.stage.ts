import { Inject, Injectable, OnApplicationBootstrap } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import type { AccessFragment } from '../fhir/pipeline/access-predicate';
import type { Interaction } from '../fhir/pipeline/interaction';
import type { Principal } from '../fhir/pipeline/principal';
import { ConsentDecision, ConsentStage } from '../fhir/pipeline/pipeline.stages';
import { JudgedRow, ReadAccessRegistry } from '../fhir/pipeline/read-access';
import { AccessAttributesContext, accessAttributesOf, AccessAttributes } from '../fhir/storage/access-attributes';
import { SqlParams } from '../fhir/storage/sql-params';
import { CONSENT_POLICY, ConsentPolicy } from './consent-policy';
import { baseSharesWith, columnsOf, DECIDING_ORDER, matchingProvisions, ReadAccessExtensions, renderConsentPredicate, Requester } from './consent-sql';
import { interactionMayReach } from './restriction-scope';
import { misplacedTypeRules, restrictedTypes, TYPE_ACCESS } from './type-access-rules';

/** Interactions on one resource whose decision the audit record explains down to the provision. */
const BY_ID = new Set(['read', 'vread', 'history-instance']);

/**
 * The consent stage (GUIDE §4, docs/consent.md): one typed fragment per interaction over the row's
 * custodian organization, compartments, security labels, type and date, joined with the
 * materialized provisions of the patients' active Consents. Every read path (search, includes,
 * chains, _has, history, vread, conditional matches, writes) renders it for its own alias.
 */
@Injectable()
export class ConsentAccessStage extends ConsentStage implements OnApplicationBootstrap {
  constructor(
    @Inject(CONSENT_POLICY) private readonly policy: ConsentPolicy,
    private readonly registry: ReadAccessRegistry,
  ) {
    super();
  }

  /** After every module's onModuleInit registered: a type rule that could never apply stops the start. */
  onApplicationBootstrap(): void {
    const misplaced = misplacedTypeRules(this.registry.rulesByType());
    if (misplaced.length) throw new Error(`Read-access type rules for types that are not custodian-only: ${misplaced.join('; ')}`);
  }

  async decide(principal: Principal, interaction: Interaction): Promise<ConsentDecision> {
    const who = requesterOf(principal);
    const policy = this.policy;
    const extensions = this.extensions(interaction, who);
    // The Binary securityContext branch doubles the predicate (and its planning) for every row; an
    // interaction on another type renders it without: a Binary it reaches anyway (an `_include` of
    // a Resource reference) then falls under the type table's custodian-only rule, never wider.
    const binaryRows = !interaction.resourceType || interaction.resourceType === 'Binary' || interaction.kind === 'operation';
    const fragment: AccessFragment = {
      basis: 'consent',
      description: this.describe(who, extensions),
      render: (alias, bind) => renderConsentPredicate(binaryRows ? columnsOf(alias) : withoutSecurityContext(columnsOf(alias)), bind, policy, who, extensions),
    };
    return { fragments: [fragment], basis: fragment.description };
  }

  override async explain(principal: Principal, interaction: Interaction, judged: AccessAttributes | undefined, tx: EntityManager): Promise<string | undefined> {
    if (!BY_ID.has(interaction.kind) || !interaction.resourceType || !interaction.id) return undefined;
    return this.explainAccess(requesterOf(principal), interaction, judged, tx);
  }

  /** The registered extensions; a read restriction only where the interaction can reach its types. */
  private extensions(interaction: Interaction, who: Requester): ReadAccessExtensions {
    const restrictions = this.registry.restrictions().filter((r) => interactionMayReach(interaction, r.resourceTypes));
    return { contributors: this.registry.contributorsFor(who.purpose), typeRules: this.registry.rulesByType(), restrictions };
  }

  private describe(who: Requester, extensions: ReadAccessExtensions): string {
    const p = this.policy;
    const shared = baseSharesWith(p, who);
    const parts = [`policy ${p.basePolicy} (${who.purpose ?? 'no purpose'} ${shared ? 'shared unless denied' : 'only where a Consent permits'})`];
    // Contributors matter only where the base policy would not share (see renderPatientFallback).
    if (!shared && !who.breakGlass && extensions.contributors.length) parts.push(`contributors ${extensions.contributors.map((c) => `${c.basis} (${c.name})`).join(', ')}`);
    if (who.breakGlass) parts.push(`break-the-glass overrides patient denials${p.breakGlassOverridesSensitive ? ' and sensitive labels' : ', not sensitive labels'}`);
    return parts.join(', ');
  }

  /**
   * Which provision decides the resource asked for, per patient of it (current row, or the version
   * asked for): `Consent/{id}/_history/{v}#{path} permit|deny`, `base policy`, or `own organization`.
   */
  private async explainAccess(who: Requester, i: Interaction, judged: AccessAttributes | undefined, tx: EntityManager): Promise<string | undefined> {
    const version = i.kind === 'vread' && /^\d{1,9}$/.test(i.versionId ?? '') ? Number(i.versionId) : undefined;
    // The row the read judged (no statement); a refused access looks its attributes up in the session.
    const [row] = judged ? [judged] : await accessAttributesOf(AccessAttributesContext.CONSENT_EXPLANATION, tx, [{ resourceType: i.resourceType!, id: i.id!, versionId: version }]);
    if (!row) return undefined;
    const target = `${row.resourceType}/${row.id}${version ? `/_history/${version}` : ''}`;
    if (who.organization && row.custodianOrg === who.organization) return `${target}: own organization (custodian)`;
    if (!row.compartments.length) return `${target}: ${this.typeRuleOf(row.resourceType)}`;
    const restricted = await this.restrictionsHiding(who, row, tx);
    const decided = await this.decidingProvisions(who, row, tx);
    return `${target}: ${decided.join(', ')}${restricted.length ? `; hidden by read restriction ${restricted.join(', ')}` : ''}`;
  }

  /** The read restrictions (docs/consent.md) for the row's type that do not let this requester pass. */
  private async restrictionsHiding(who: Requester, row: AccessAttributes, tx: EntityManager): Promise<string[]> {
    const restrictions = this.registry.restrictions().filter((r) => r.resourceTypes.includes(row.resourceType));
    if (!restrictions.length) return [];
    const p = new SqlParams();
    // Bound on first use only: a value bound but not used by the statement fails it.
    const bound = new Map<string, string>();
    const once = (name: string, value: unknown, type: string): string => bound.get(name) ?? (bound.set(name, `${p.bind(value)}::${type}`), bound.get(name)!);
    const judged: JudgedRow = {
      get custodianOrg() { return once('custodianOrg', row.custodianOrg ?? null, 'text'); },
      get compartments() { return once('compartments', row.compartments, 'text[]'); },
      get securityLabels() { return once('securityLabels', row.securityLabels, 'text[]'); },
      get resourceType() { return once('resourceType', row.resourceType, 'text'); },
      get id() { return once('id', row.id, 'text'); },
      get clinicalPeriod() { return once('clinicalPeriod', row.clinicalPeriod, 'tstzrange'); },
    };
    const requester = {
      get organization() { return once('organization', who.organization ?? null, 'text'); },
      get purpose() { return once('purpose', who.purpose ?? null, 'text'); },
    };
    const passes = restrictions.map((r, i) => `(${r.render(judged, requester, p)}) AS r${i}`).join(', ');
    const [result]: Record<string, boolean>[] = await tx.query(`SELECT ${passes}`, p.values);
    return restrictions.filter((_r, i) => result?.[`r${i}`] !== true).map((r) => r.name);
  }

  /** The rule a row in no patient's compartment falls under (docs/consent.md, Types outside the Patient compartment). */
  private typeRuleOf(resourceType: string): string {
    if (TYPE_ACCESS.get(resourceType) === 'shared') return 'no patient (shared type)';
    // A type of the compartment whose row names no patient: visible as before (docs/consent.md, Not done yet).
    if (!restrictedTypes().includes(resourceType)) return 'no patient (base policy)';
    const rules = this.registry.rulesByType().get(resourceType) ?? [];
    return rules.length ? `no patient (custodian only, or type rule ${rules.map((r) => r.name).join(' or ')})` : 'no patient (custodian only)';
  }

  private async decidingProvisions(who: Requester, row: AccessAttributes, tx: EntityManager): Promise<string[]> {
    const p = new SqlParams();
    // Contributors are asked only where the base policy would not share: which one opened each patient.
    const contributors = baseSharesWith(this.policy, who) || who.breakGlass ? [] : this.registry.contributorsFor(who.purpose);
    let custodianOrg: string | undefined;
    const judged = {
      // Own-organization rows were answered above; only a contributor may compare it (a referral opens
      // the referring organization's own records): bound on first use, as a value bound but unused fails the statement.
      get custodianOrg() {
        return (custodianOrg ??= `${p.bind(row.custodianOrg ?? null)}::text`);
      },
      compartments: `${p.bind(row.compartments)}::text[]`,
      securityLabels: `${p.bind(row.securityLabels)}::text[]`,
      resourceType: `${p.bind(row.resourceType)}::text`,
      id: `${p.bind(row.id)}::text`,
      clinicalPeriod: `${p.bind(row.clinicalPeriod)}::tstzrange`,
    };
    const requester = {
      organization: `${p.bind(who.organization ?? null)}::text`,
      purpose: `${p.bind(who.purpose ?? null)}::text`,
      actors: `${p.bind([...(who.actors ?? [])])}::text[]`,
    };
    const contributed = contributors
      .map((c, i) => `, (${c.render('cns_c.patient', judged, requester, p)}) AS contributor_${i}${c.renderGrant ? `, (${c.renderGrant('cns_c.patient', judged, requester, p)}) AS grant_${i}` : ''}`)
      .join('');
    const rows: ({ patient: string; consent_id: string | null; consent_version: number | null; provision_path: string | null; permit: boolean | null } & Record<string, unknown>)[] = await tx.query(
      `SELECT cns_c.patient, d.consent_id, d.consent_version, d.provision_path, d.permit${contributed}
         FROM unnest(${judged.compartments}) AS cns_c(patient)
         LEFT JOIN LATERAL (
           SELECT cns_p.consent_id, cns_p.consent_version, cns_p.provision_path, cns_p.permit
             FROM ${matchingProvisions('cns_c.patient', judged, requester, `(cns_p.security_label IS NULL OR cns_p.security_label = ANY(${judged.securityLabels}))`)}
            ORDER BY ${DECIDING_ORDER} LIMIT 1) d ON true
        ORDER BY cns_c.patient`,
      p.values,
    );
    return rows.map((r) => {
      if (r.consent_id) return `Patient/${r.patient} by Consent/${r.consent_id}/_history/${r.consent_version}#${r.provision_path} ${r.permit ? 'permit' : 'deny'}`;
      const opened = contributors.flatMap((c, i) => (r[`contributor_${i}`] === true ? [`${c.basis} (${c.name})${typeof r[`grant_${i}`] === 'string' ? ` ${r[`grant_${i}`] as string}` : ''}`] : []));
      return opened.length ? `Patient/${r.patient} by ${opened.join(', ')}` : `Patient/${r.patient} by base policy`;
    });
  }
}

function requesterOf(principal: Principal): Requester {
  return {
    organization: principal.organization,
    purpose: principal.purposeOfUse,
    // The authentication stage refuses ETREAT without a reason, so a reason here is a checked one;
    // break-the-glass is for treating organizations only (docs/security.md), checked here again.
    breakGlass: principal.role === 'hospital' && principal.purposeOfUse === 'ETREAT' && !!principal.breakGlassReason,
    actors: principal.onBehalfOf ?? [],
  };
}

function withoutSecurityContext(row: ReturnType<typeof columnsOf>): ReturnType<typeof columnsOf> {
  const { securityContext: _unused, ...rest } = row;
  return rest;
}
