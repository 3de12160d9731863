import { randomBytes } from 'node:crypto';
import { Injectable, Optional } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { JSONWebKeySet } from 'jose';
import { DataSource } from 'typeorm';
import type { HieRole } from '../fhir/pipeline/principal';
import { ClientRegistrationCache } from './client-registration.cache';
import { ClientSecretHasher } from './client-secret.hasher';

export const ROLES: readonly HieRole[] = ['hospital', 'public-health', 'auditor', 'admin'];

/** A registered client: who it is (organization, role) and what it may ask for. */
export interface ClientRegistration {
  clientId: string;
  name: string;
  organization: string;
  role: HieRole;
  scopes: string[];
  purposes: string[];
  clinicalAccess: boolean;
  jwks?: JSONWebKeySet;
  hasSecret: boolean;
  disabled: boolean;
  createdAt: string;
}

export interface NewClient {
  clientId?: string;
  name: string;
  organization: string;
  role: HieRole;
  scopes: string[];
  purposes: string[];
  clinicalAccess?: boolean;
  jwks?: JSONWebKeySet;
  /** Generate a client secret (returned once, stored as an HMAC: ClientSecretHasher). */
  withSecret?: boolean;
  /** Use this secret instead of generating one (bootstrap from the environment). */
  secret?: string;
}

interface ClientRow {
  client_id: string;
  name: string;
  organization: string;
  role: HieRole;
  scopes: string[];
  purposes: string[];
  clinical_access: boolean;
  jwks: JSONWebKeySet | null;
  secret_hash: string | null;
  disabled: boolean;
  created_at: Date;
}

/** Every query on registered clients. Secrets are only ever stored hashed (`hmac-sha256$…`). */
@Injectable()
export class ClientRegistrationRepository {
  constructor(
    @InjectDataSource() private readonly db: DataSource,
    private readonly secrets: ClientSecretHasher,
    /** In the server: dropped here at once; other nodes hear the trigger's NOTIFY. The CLI has none. */
    @Optional() private readonly cache?: ClientRegistrationCache,
  ) {}

  async create(input: NewClient): Promise<{ client: ClientRegistration; secret?: string }> {
    const clientId = input.clientId ?? `client-${randomBytes(8).toString('hex')}`;
    const secret = input.secret ?? (input.withSecret ? randomBytes(32).toString('base64url') : undefined);
    const rows: ClientRow[] = await this.db.query(
      `INSERT INTO oauth_client (client_id, name, organization, role, scopes, purposes, clinical_access, jwks, secret_hash)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
       ON CONFLICT (client_id) DO NOTHING
       RETURNING *`,
      [
        clientId,
        input.name,
        input.organization,
        input.role,
        input.scopes,
        input.purposes,
        input.clinicalAccess ?? false,
        input.jwks ? JSON.stringify(input.jwks) : null,
        secret ? await this.secrets.hash(secret) : null,
      ],
    );
    if (!rows[0]) throw new ClientConflictError(clientId);
    return { client: toRegistration(rows[0]), secret };
  }

  async find(clientId: string): Promise<(ClientRegistration & { secretHash?: string }) | undefined> {
    const rows: ClientRow[] = await this.db.query(`SELECT * FROM oauth_client WHERE client_id = $1`, [clientId]);
    return rows[0] ? { ...toRegistration(rows[0]), secretHash: rows[0].secret_hash ?? undefined } : undefined;
  }

  async list(): Promise<ClientRegistration[]> {
    const rows: ClientRow[] = await this.db.query(`SELECT * FROM oauth_client ORDER BY created_at, client_id`);
    return rows.map(toRegistration);
  }

  async count(): Promise<number> {
    const [{ n }] = await this.db.query(`SELECT count(*)::int AS n FROM oauth_client`);
    return n;
  }

  async setDisabled(clientId: string, disabled: boolean): Promise<boolean> {
    const heard = this.cache?.heard(clientId);
    const rows = await this.db.query(
      `UPDATE oauth_client SET disabled = $2, updated_at = now() WHERE client_id = $1 RETURNING client_id`,
      [clientId, disabled],
    );
    this.cache?.invalidate(clientId);
    if (rows.length) await heard;
    return rows.length > 0;
  }

  async rotateSecret(clientId: string): Promise<string | undefined> {
    const secret = randomBytes(32).toString('base64url');
    const rows = await this.db.query(
      `UPDATE oauth_client SET secret_hash = $2, updated_at = now() WHERE client_id = $1 RETURNING client_id`,
      [clientId, await this.secrets.hash(secret)],
    );
    return rows.length ? secret : undefined;
  }

  /**
   * Records a client assertion's jti until it expires; false when it was already used (replay).
   * Kept in Postgres, not in memory, so every app node sees every use.
   */
  async useAssertionId(clientId: string, jti: string, expiresAt: Date): Promise<boolean> {
    await this.db.query(`DELETE FROM used_client_assertion WHERE expires_at < now() - interval '1 minute'`);
    const rows = await this.db.query(
      `INSERT INTO used_client_assertion (client_id, jti, expires_at) VALUES ($1, $2, $3)
       ON CONFLICT DO NOTHING RETURNING jti`,
      [clientId, jti, expiresAt],
    );
    return rows.length === 1;
  }
}

export class ClientConflictError extends Error {
  constructor(readonly clientId: string) {
    super(`client ${clientId} already exists`);
  }
}

function toRegistration(row: ClientRow): ClientRegistration {
  return {
    clientId: row.client_id,
    name: row.name,
    organization: row.organization,
    role: row.role,
    scopes: row.scopes,
    purposes: row.purposes,
    clinicalAccess: row.clinical_access,
    jwks: row.jwks ?? undefined,
    hasSecret: row.secret_hash !== null,
    disabled: row.disabled,
    createdAt: new Date(row.created_at).toISOString(),
  };
}
