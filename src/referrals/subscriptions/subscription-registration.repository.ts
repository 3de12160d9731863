import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource, EntityManager } from 'typeorm';
import type { Principal } from '../../fhir/pipeline/principal';

/** What the server keeps of a Subscription beside the resource (migration 1732402400200). */
export interface SubscriptionRegistration {
  id: string;
  resourceType: string;
  /** The search after `Type?` (`owner=Organization/b&status=requested`). */
  criteria: string;
  status: 'active' | 'error' | 'off';
  endpoint: string;
  payload: string | null;
  headers: string[];
  secret: string | null;
  principal: Principal;
  custodianOrg: string | null;
  /** `Subscription.end`: from then on the Subscription matches nothing (null: no end). */
  endsAt: Date | null;
  failureCount: number;
}

interface Row {
  id: string;
  resource_type: string;
  /** The search after `Type?` (`owner=Organization/b&status=requested`). */
  criteria: string;
  status: SubscriptionRegistration['status'];
  endpoint: string;
  payload: string | null;
  headers: string[];
  secret: string | null;
  principal: Principal;
  custodian_org: string | null;
  ends_at: Date | null;
  failure_count: number;
}

const toRegistration = (r: Row): SubscriptionRegistration => ({
  id: r.id,
  resourceType: r.resource_type,
  criteria: r.criteria,
  status: r.status,
  endpoint: r.endpoint,
  payload: r.payload,
  headers: r.headers,
  secret: r.secret,
  principal: r.principal,
  custodianOrg: r.custodian_org,
  endsAt: r.ends_at,
  failureCount: r.failure_count,
});

/** The module's own table (no resource SQL): one row per stored Subscription. */
@Injectable()
export class SubscriptionRegistrations {
  constructor(@InjectDataSource() private readonly db: DataSource) {}

  /** Written in the Subscription write's transaction; a write without a secret keeps the stored one (it is write-only). */
  async save(tx: EntityManager, r: Omit<SubscriptionRegistration, 'failureCount'>): Promise<void> {
    await tx.query(
      `INSERT INTO subscription_registration (id, resource_type, criteria, status, endpoint, payload, headers, secret, principal, custodian_org, ends_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
       ON CONFLICT (id) DO UPDATE SET resource_type = EXCLUDED.resource_type, criteria = EXCLUDED.criteria, status = EXCLUDED.status,
         endpoint = EXCLUDED.endpoint, payload = EXCLUDED.payload, headers = EXCLUDED.headers, ends_at = EXCLUDED.ends_at,
         secret = COALESCE(EXCLUDED.secret, subscription_registration.secret), principal = EXCLUDED.principal,
         failure_count = 0, last_error = NULL, last_failure_at = NULL, updated_at = now()`,
      [r.id, r.resourceType, r.criteria, r.status, r.endpoint, r.payload, r.headers, r.secret, JSON.stringify(r.principal), r.custodianOrg, r.endsAt],
    );
  }

  async remove(tx: EntityManager, id: string): Promise<void> {
    await tx.query(`DELETE FROM subscription_registration WHERE id = $1`, [id]);
  }

  /**
   * The Subscriptions that may match a write of the type (`error` ones too: a success makes them
   * active again), not those past their `end` (the caller's cache checks `endsAt` again).
   */
  async candidates(tx: EntityManager, resourceType: string): Promise<SubscriptionRegistration[]> {
    const rows: Row[] = await tx.query(
      `SELECT * FROM subscription_registration WHERE resource_type = $1 AND status IN ('active', 'error') AND (ends_at IS NULL OR ends_at > now()) ORDER BY id`,
      [resourceType],
    );
    return rows.map(toRegistration);
  }

  /** Several by id in one statement (the match job's candidates); missing ids are left out. */
  async byIds(ids: readonly string[]): Promise<SubscriptionRegistration[]> {
    if (!ids.length) return [];
    const rows: Row[] = await this.db.query(`SELECT * FROM subscription_registration WHERE id = ANY($1::text[])`, [ids]);
    return rows.map(toRegistration);
  }

  async get(id: string): Promise<SubscriptionRegistration | undefined> {
    const rows: Row[] = await this.db.query(`SELECT * FROM subscription_registration WHERE id = $1`, [id]);
    return rows[0] ? toRegistration(rows[0]) : undefined;
  }

  /** Counts a failed delivery; answers true when this failure moved the Subscription from active to error. */
  async failed(tx: EntityManager, id: string, reason: string, errorAfter: number): Promise<boolean> {
    const row = await this.lockStatus(tx, id);
    if (!row) return false;
    const toError = row.status === 'active' && row.failure_count + 1 >= errorAfter;
    await tx.query(
      `UPDATE subscription_registration SET failure_count = failure_count + 1, last_error = $2, last_failure_at = now(), status = CASE WHEN $3 THEN 'error' ELSE status END WHERE id = $1`,
      [id, reason, toError],
    );
    return toError;
  }

  /** A delivery succeeded: the count restarts; answers true when this moved the Subscription from error to active. */
  async delivered(tx: EntityManager, id: string): Promise<boolean> {
    const row = await this.lockStatus(tx, id);
    if (!row || (row.failure_count === 0 && row.status !== 'error')) return false;
    await tx.query(`UPDATE subscription_registration SET failure_count = 0, last_error = NULL, status = CASE WHEN status = 'error' THEN 'active' ELSE status END WHERE id = $1`, [id]);
    return row.status === 'error';
  }

  /** The row's status and count, locked until the transaction ends (concurrent deliveries' counts take turns). */
  private async lockStatus(tx: EntityManager, id: string): Promise<{ status: string; failure_count: number } | undefined> {
    const rows: { status: string; failure_count: number }[] = await tx.query(`SELECT status, failure_count FROM subscription_registration WHERE id = $1 FOR UPDATE`, [id]);
    return rows[0];
  }

  /** Failing Subscriptions for HIE admins: ids, owners, endpoints and counts, no content. */
  async failing(): Promise<{ id: string; custodianOrg: string | null; endpoint: string; status: string; failureCount: number; lastError: string | null; lastFailureAt: string | null }[]> {
    const rows: { id: string; custodian_org: string | null; endpoint: string; status: string; failure_count: number; last_error: string | null; last_failure_at: Date | null }[] = await this.db.query(
      `SELECT id, custodian_org, endpoint, status, failure_count, last_error, last_failure_at FROM subscription_registration
        WHERE status = 'error' OR failure_count > 0 ORDER BY last_failure_at DESC NULLS LAST, id`,
    );
    return rows.map((r) => ({ id: r.id, custodianOrg: r.custodian_org, endpoint: r.endpoint, status: r.status, failureCount: r.failure_count, lastError: r.last_error, lastFailureAt: r.last_failure_at?.toISOString() ?? null }));
  }
}
