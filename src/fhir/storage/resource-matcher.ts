import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, EntityManager } from 'typeorm';
import { FhirError } from '../../common/fhir-error';
import type { AccessContext } from '../pipeline/access-context';
import { shift } from './resource.repository';

/**
 * Serializes conditional operations with the same criteria until the transaction ends, so two
 * concurrent conditional creates cannot both see "no match".
 */
export async function lockCriteria(tx: EntityManager, resourceType: string, criteria: string): Promise<void> {
  const normalized = [...new URLSearchParams(criteria)].map(([k, v]) => `${k}=${v}`).sort().join('&');
  await tx.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`${resourceType}?${normalized}`]);
}

/**
 * Finds the ids of current resources matching search criteria, for conditional create, update,
 * delete and conditional references. The search module provides the full implementation; this
 * abstract class keeps storage and transactions independent of it.
 */
export abstract class ResourceMatcher {
  abstract matchIds(ctx: AccessContext, resourceType: string, criteria: string, tx?: EntityManager): Promise<string[]>;
}

/**
 * Criteria of the form used by hospital feeds (`identifier=system|value`, `_id=x`), evaluated in
 * SQL with jsonb containment (served by the primary key / the jsonb content). Replaced by the
 * search module's matcher where that is registered.
 */
@Injectable()
export class IdentifierResourceMatcher extends ResourceMatcher {
  constructor(@InjectDataSource() private readonly db: DataSource) {
    super();
  }

  async matchIds(ctx: AccessContext, resourceType: string, criteria: string, tx?: EntityManager): Promise<string[]> {
    const params: unknown[] = [resourceType];
    const where = ['r.resource_type = $1', 'NOT r.deleted'];
    const query = new URLSearchParams(criteria);
    if ([...query.keys()].length === 0) throw FhirError.badRequest(`Conditional criteria '${criteria}' are empty`);
    for (const [name, value] of query) {
      if (name === '_id') {
        params.push(value.split(','));
        where.push(`r.id = ANY($${params.length})`);
      } else if (name === 'identifier') {
        const alternatives = value.split(',').map((v) => {
          const bar = v.indexOf('|');
          const system = bar >= 0 ? v.slice(0, bar) : undefined;
          const code = bar >= 0 ? v.slice(bar + 1) : v;
          const element: Record<string, string> = {};
          if (system) element.system = system;
          if (code) element.value = code;
          params.push(JSON.stringify({ identifier: [element] }));
          return `r.content @> $${params.length}::jsonb`;
        });
        where.push(`(${alternatives.join(' OR ')})`);
      } else {
        throw FhirError.notSupported(`Conditional criteria on '${name}' are not supported (use identifier or _id)`);
      }
    }
    const offset = params.length;
    params.push(...ctx.readPredicateParams);
    where.push(`(${shift(ctx.readPredicate, offset)})`);
    const rows: { id: string }[] = await (tx ?? this.db).query(
      `SELECT r.id FROM resource r WHERE ${where.join(' AND ')} LIMIT 1001`,
      params,
    );
    return rows.map((r) => r.id);
  }
}
