import { Inject, Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import type { AccessFragment } from '../fhir/pipeline/access-predicate';
import type { Interaction } from '../fhir/pipeline/interaction';
import type { Principal } from '../fhir/pipeline/principal';
import { ConsentDecision, ConsentStage } from '../fhir/pipeline/pipeline.stages';
import { accessAttributesOf, AccessAttributes } from '../fhir/storage/access-attributes';
import { SqlParams } from '../fhir/storage/sql-params';
import { CONSENT_POLICY, ConsentPolicy } from './consent-policy';
import { columnsOf, DECIDING_ORDER, matchingProvisions, renderConsentPredicate, Requester } from './consent-sql';

/** Interactions on one resource whose decision the audit record explains down to the provision. */
const BY_ID = new Set(['read', 'vread', 'history-instance']);

/**
 * The consent stage (GUIDE §4, docs/consent.md): one typed fragment per interaction over the row's
 * authoring organization, compartments, security labels, type and date, joined with the
 * materialized provisions of the patients' active Consents. Every read path (search, includes,
 * chains, _has, history, vread, conditional matches, writes) renders it for its own alias.
 */
@Injectable()
export class ConsentAccessStage extends ConsentStage {
  constructor(
    @Inject(CONSENT_POLICY) private readonly policy: ConsentPolicy,
  ) {
    super();
  }

  async decide(principal: Principal, _interaction: Interaction): Promise<ConsentDecision> {
    const who = requesterOf(principal);
    const policy = this.policy;
    const fragment: AccessFragment = {
      basis: 'consent',
      description: this.describe(who),
      render: (alias, bind) => renderConsentPredicate(columnsOf(alias), bind, policy, who),
    };
    return { fragments: [fragment], basis: fragment.description };
  }

  override async explain(principal: Principal, interaction: Interaction, judged: AccessAttributes | undefined, tx: EntityManager): Promise<string | undefined> {
    if (!BY_ID.has(interaction.kind) || !interaction.resourceType || !interaction.id) return undefined;
    return this.explainAccess(requesterOf(principal), interaction, judged, tx);
  }

  private describe(who: Requester): string {
    const p = this.policy;
    const shared = p.basePolicy === 'opt-out' && !!who.purpose && p.sharedPurposes.includes(who.purpose);
    const parts = [`policy ${p.basePolicy} (${who.purpose ?? 'no purpose'} ${shared ? 'shared unless denied' : 'only where a Consent permits'})`];
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
    const [row] = judged ? [judged] : await accessAttributesOf(tx, [{ resourceType: i.resourceType!, id: i.id!, versionId: version }]);
    if (!row) return undefined;
    const target = `${row.resourceType}/${row.id}${version ? `/_history/${version}` : ''}`;
    if (who.organization && row.authorOrg === who.organization) return `${target}: own organization`;
    if (!row.compartments.length) return `${target}: no patient (base policy)`;
    const decided = await this.decidingProvisions(who, row, tx);
    return `${target}: ${decided.join(', ')}`;
  }

  private async decidingProvisions(who: Requester, row: AccessAttributes, tx: EntityManager): Promise<string[]> {
    const p = new SqlParams();
    const judged = {
      // Own-organization rows were answered above; the organization is not part of this query.
      authorOrg: 'NULL',
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
    const rows: { patient: string; consent_id: string | null; consent_version: number | null; provision_path: string | null; permit: boolean | null }[] = await tx.query(
      `SELECT cns_c.patient, d.consent_id, d.consent_version, d.provision_path, d.permit
         FROM unnest(${judged.compartments}) AS cns_c(patient)
         LEFT JOIN LATERAL (
           SELECT cns_p.consent_id, cns_p.consent_version, cns_p.provision_path, cns_p.permit
             FROM ${matchingProvisions('cns_c.patient', judged, requester, `(cns_p.security_label IS NULL OR cns_p.security_label = ANY(${judged.securityLabels}))`)}
            ORDER BY ${DECIDING_ORDER} LIMIT 1) d ON true
        ORDER BY cns_c.patient`,
      p.values,
    );
    return rows.map((r) =>
      r.consent_id
        ? `Patient/${r.patient} by Consent/${r.consent_id}/_history/${r.consent_version}#${r.provision_path} ${r.permit ? 'permit' : 'deny'}`
        : `Patient/${r.patient} by base policy`,
    );
  }
}

function requesterOf(principal: Principal): Requester {
  return {
    organization: principal.organization,
    purpose: principal.purposeOfUse,
    // The authentication stage refuses ETREAT without a reason, so a reason here is a checked one.
    breakGlass: principal.purposeOfUse === 'ETREAT' && !!principal.breakGlassReason,
    actors: principal.onBehalfOf ?? [],
  };
}
