import type { EntityManager } from 'typeorm';

/** What the access rules judge a stored row by (docs/consent.md). */
export interface AccessAttributes {
  resourceType: string;
  id: string;
  authorOrg: string | null;
  compartments: string[];
  securityLabels: string[];
  lastUpdated: string;
  /** `clinical_period` (tstzrange text), or the recorded instant where there is none (docs/consent.md). */
  clinicalPeriod: string;
}

/**
 * The access attributes of current rows (or one version), whatever their visibility. Not a read of
 * resources (no content): used by the consent module inside a write's transaction (whose patient a
 * Consent is, which organization authored it) and to explain a decision in the audit record.
 */
export async function accessAttributesOf(
  db: Pick<EntityManager, 'query'>,
  refs: readonly { resourceType: string; id: string; versionId?: number }[],
): Promise<AccessAttributes[]> {
  if (!refs.length) return [];
  const rows: { resource_type: string; id: string; author_org: string | null; compartments: string[]; security_labels: string[]; last_updated: Date; clinical_period: string }[] = await db.query(
    `SELECT r.resource_type, r.id, r.author_org, r.compartments, r.security_labels, r.last_updated,
            COALESCE(r.clinical_period, tstzrange(r.last_updated, r.last_updated, '[]'))::text AS clinical_period
       FROM jsonb_to_recordset($1::jsonb) AS q(resource_type text, id text, version_id int)
       JOIN LATERAL (
         SELECT h.resource_type, h.id, h.author_org, h.compartments, h.security_labels, h.last_updated, h.clinical_period FROM resource_history h
          WHERE q.version_id IS NOT NULL AND h.resource_type = q.resource_type AND h.id = q.id AND h.version_id = q.version_id
         UNION ALL
         SELECT c.resource_type, c.id, c.author_org, c.compartments, c.security_labels, c.last_updated, c.clinical_period FROM resource c
          WHERE q.version_id IS NULL AND c.resource_type = q.resource_type AND c.id = q.id
       ) r ON true`,
    [JSON.stringify(refs.map((r) => ({ resource_type: r.resourceType, id: r.id, version_id: r.versionId ?? null })))],
  );
  return rows.map((r) => ({
    resourceType: r.resource_type,
    id: r.id,
    authorOrg: r.author_org,
    compartments: r.compartments ?? [],
    securityLabels: r.security_labels ?? [],
    lastUpdated: new Date(r.last_updated).toISOString(),
    clinicalPeriod: r.clinical_period,
  }));
}
