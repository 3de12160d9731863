import { Injectable, Optional } from '@nestjs/common';
import type { Coding, Meta, Resource } from '@medplum/fhirtypes';
import type { EntityManager } from 'typeorm';
import { FhirError } from '../../common/fhir-error';
import type { AccessContext } from '../pipeline/access-context';
import { securityLabelsOf } from './patient-compartment';
import { notWritable, ResourceIndexer, StoredVersion } from './resource.repository';
import { StorageSession } from './storage-session';
import { SqlParams } from './sql-params';

/** What `$validate` with mode update/delete needs to know of a stored resource, judged like a write. */
export interface Writability {
  deleted: boolean;
  /** Readable by the requester AND the write rule holds (the same test a write's lock makes). */
  writable: boolean;
}

/**
 * The resource SQL of the meta operations (`$meta`, `$meta-add`, `$meta-delete`) and of `$validate`'s
 * write checks. Every statement renders the caller's AccessContext, as ResourceRepository's do.
 */
@Injectable()
export class ResourceMetaRepository {
  constructor(@Optional() private readonly indexer?: ResourceIndexer) {}

  /** Whether the current row could be changed by the requester (no lock: nothing is written). */
  async writability(ctx: AccessContext, resourceType: string, id: string, tx: EntityManager): Promise<Writability | undefined> {
    const p = new SqlParams();
    const rows: Writability[] = await tx.query(
      `SELECT r.deleted, ${ctx.renderWrite('r', p)} AS writable
         FROM resource r WHERE r.resource_type = ${p.bind(resourceType)} AND r.id = ${p.bind(id)}`,
      p.values,
    );
    return rows[0];
  }

  /**
   * The profiles, tags and security labels in use on the current resources of `types` the requester
   * may read: distinct values from the `_profile`, `_tag` and `_security` index rows, joined to
   * their resources under the AccessContext, so nothing is loaded to be filtered here.
   */
  async metaInUse(ctx: AccessContext, types: readonly string[], tx: EntityManager): Promise<Meta> {
    const p = new SqlParams();
    const typeList = p.bind(types);
    const visible = (x: string): string => `JOIN resource r ON r.resource_type = ${x}.resource_type AND r.id = ${x}.id
        WHERE ${x}.resource_type = ANY(${typeList}::text[]) AND NOT r.deleted AND ${ctx.renderRead('r', p)}`;
    const rows: { element: 'profile' | 'tag' | 'security'; system: string | null; code: string }[] = await tx.query(
      `SELECT 'profile' AS element, NULL AS system, u.uri AS code FROM search_uri u ${visible('u')} AND u.param = '_profile'
       UNION
       SELECT CASE t.param WHEN '_tag' THEN 'tag' ELSE 'security' END, t.system, t.code FROM search_token t ${visible('t')}
          AND t.param IN ('_tag', '_security') AND t.code IS NOT NULL
       ORDER BY 1, 2 NULLS FIRST, 3`,
      p.values,
    );
    const meta: Meta = {};
    const coding = (r: { system: string | null; code: string }): Coding => (r.system !== null ? { system: r.system, code: r.code } : { code: r.code });
    for (const r of rows) {
      if (r.element === 'profile') (meta.profile ??= []).push(r.code);
      else (meta[r.element] ??= []).push(coding(r));
    }
    return meta;
  }

  /**
   * Changes the meta of the current version in place (R4 `$meta-add` / `$meta-delete`: no new
   * version): the content of the resource row and of that version's history row, the security
   * labels access is judged on, and the index rows. Locked and judged like a write: a resource the
   * requester may not change (missing, hidden, another organization's) is one 403.
   */
  async updateMeta(
    ctx: AccessContext,
    resourceType: string,
    id: string,
    change: (resource: Resource) => Resource,
    tx: EntityManager,
  ): Promise<StoredVersion> {
    await StorageSession.of(tx)?.createQueue?.flush();
    const p = new SqlParams();
    const rows: { version_id: number; last_updated: Date; deleted: boolean; compartments: string[]; content: Resource | null; writable: boolean }[] =
      await tx.query(
        `SELECT r.version_id, r.last_updated, r.deleted, r.compartments, r.content, ${ctx.renderWrite('r', p)} AS writable
           FROM resource r WHERE r.resource_type = ${p.bind(resourceType)} AND r.id = ${p.bind(id)} FOR UPDATE`,
        p.values,
      );
    const cur = rows[0];
    if (!cur?.writable) throw notWritable(resourceType, id);
    if (cur.deleted || !cur.content) throw new FhirError(410, 'deleted', `${resourceType}/${id} was deleted`);
    const content = change(cur.content);
    const json = JSON.stringify(content);
    const labels = securityLabelsOf(content);
    await tx.query(
      `WITH h AS (
         UPDATE resource_history SET content = $4, security_labels = $5
          WHERE resource_type = $1 AND id = $2 AND version_id = $3
       )
       UPDATE resource SET content = $4, security_labels = $5 WHERE resource_type = $1 AND id = $2`,
      [resourceType, id, cur.version_id, json, labels],
    );
    if (this.indexer) await this.indexer.index(tx, resourceType, id, content, true);
    return {
      resourceType,
      id,
      versionId: cur.version_id,
      lastUpdated: new Date(cur.last_updated).toISOString(),
      deleted: false,
      resource: content,
      compartments: cur.compartments ?? [],
    };
  }
}
