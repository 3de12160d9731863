import type { EntityManager } from 'typeorm';

/** What the access rules judge a stored row by (docs/consent.md). */
export interface AccessAttributes {
  resourceType: string;
  id: string;
  /** The custodian organization (consent's "own data", the default write policy). */
  custodianOrg: string | null;
  /** Written-by: the organization that wrote the version. */
  authorOrg: string | null;
  compartments: string[];
  securityLabels: string[];
  lastUpdated: string;
  /** `clinical_period` (tstzrange text), or the recorded instant where there is none (docs/consent.md). */
  clinicalPeriod: string;
}

/**
 * The named, static internal contexts that may look up any row's access attributes (docs/security.md,
 * "Internal contexts"). Not an AccessContext: it opens no content read, search or write, so it
 * cannot be handed to storage for anything but this lookup. Static (no per-call `SystemAccess.mint`,
 * which would write an audit record per lookup): each lookup happens inside an interaction that is
 * audited itself.
 */
export class AccessAttributesContext {
  private constructor(readonly name: string) {}

  /** The consent module's Consent materializer, in the write's transaction: whose patient a Consent is, which organization wrote both. */
  static readonly CONSENT_MATERIALIZATION = new AccessAttributesContext('consent-materialization');
  /** The consent stage's explanation of an access by id (which provision decided), for the audit record. */
  static readonly CONSENT_EXPLANATION = new AccessAttributesContext('consent-explanation');
}

const NAMED = new Set<unknown>([AccessAttributesContext.CONSENT_MATERIALIZATION, AccessAttributesContext.CONSENT_EXPLANATION]);

/**
 * The access attributes of current rows (or one version), whatever their visibility. Not a read of
 * resources (no content): used by the consent module inside a write's transaction (whose patient a
 * Consent is, which organization is its custodian) and to explain a decision in the audit record,
 * and only under one of the named internal contexts above: a client's AccessContext (or anything
 * else) is refused.
 */
export async function accessAttributesOf(
  context: AccessAttributesContext,
  db: Pick<EntityManager, 'query'>,
  refs: readonly { resourceType: string; id: string; versionId?: number }[],
): Promise<AccessAttributes[]> {
  if (!NAMED.has(context)) throw new Error('accessAttributesOf reads any row: only a named internal context (AccessAttributesContext) may ask');
  if (!refs.length) return [];
  const rows: { resource_type: string; id: string; custodian_org: string | null; author_org: string | null; compartments: string[]; security_labels: string[]; last_updated: Date; clinical_period: string }[] = await db.query(
    `SELECT r.resource_type, r.id, r.custodian_org, r.author_org, r.compartments, r.security_labels, r.last_updated,
            COALESCE(r.clinical_period, tstzrange(r.last_updated, r.last_updated, '[]'))::text AS clinical_period
       FROM jsonb_to_recordset($1::jsonb) AS q(resource_type text, id text, version_id int)
       JOIN LATERAL (
         SELECT h.resource_type, h.id, h.custodian_org, h.author_org, h.compartments, h.security_labels, h.last_updated, h.clinical_period FROM resource_history h
          WHERE q.version_id IS NOT NULL AND h.resource_type = q.resource_type AND h.id = q.id AND h.version_id = q.version_id
         UNION ALL
         SELECT c.resource_type, c.id, c.custodian_org, c.author_org, c.compartments, c.security_labels, c.last_updated, c.clinical_period FROM resource c
          WHERE q.version_id IS NULL AND c.resource_type = q.resource_type AND c.id = q.id
       ) r ON true`,
    [JSON.stringify(refs.map((r) => ({ resource_type: r.resourceType, id: r.id, version_id: r.versionId ?? null })))],
  );
  return rows.map((r) => ({
    resourceType: r.resource_type,
    id: r.id,
    custodianOrg: r.custodian_org,
    authorOrg: r.author_org,
    compartments: r.compartments ?? [],
    securityLabels: r.security_labels ?? [],
    lastUpdated: new Date(r.last_updated).toISOString(),
    clinicalPeriod: r.clinical_period,
  }));
}

/**
 * SQL for an access fragment: true when `reference` (an SQL text expression holding `Type/id`)
 * names a current, undeleted resource other than a Binary for which `predicate` (rendered for
 * `alias`) holds. Used by the consent rule for Binary.securityContext (consent/consent-sql.ts);
 * kept here because only storage and search write SQL over the resource table.
 */
export function referencedResourceWhere(reference: string, alias: string, predicate: string): string {
  return `EXISTS (SELECT 1 FROM resource ${alias}
     WHERE ${reference} ~ '^[A-Z][A-Za-z]{1,63}/[A-Za-z0-9.-]{1,64}$'
       AND ${alias}.resource_type = split_part(${reference}, '/', 1) AND ${alias}.id = split_part(${reference}, '/', 2)
       AND ${alias}.resource_type <> 'Binary' AND NOT ${alias}.deleted
       AND (${predicate}))`;
}
