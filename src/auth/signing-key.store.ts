import { randomUUID } from 'node:crypto';
import { Inject, Injectable, OnApplicationBootstrap } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { exportJWK, generateKeyPair, importJWK, JWK, JSONWebKeySet } from 'jose';
import { DataSource } from 'typeorm';
import { APP_CONFIG, AppConfig } from '../config/app.config';

export const ACCESS_TOKEN_ALG = 'ES256';
/** Retired keys stay published this long, longer than any token they signed can live. */
const RETIRED_KEY_GRACE_SECONDS = 3600;

interface KeyRow {
  kid: string;
  alg: string;
  private_jwk: JWK;
  public_jwk: JWK;
}

/**
 * The server's token-signing keys, kept in Postgres so every app node signs and verifies with the
 * same keys (or given by HIE_SIGNING_KEY). Rotation adds a key and retires the old one; retired
 * public keys stay in the JWKS until tokens they signed have expired.
 */
@Injectable()
export class SigningKeyStore implements OnApplicationBootstrap {
  constructor(
    @InjectDataSource() private readonly db: DataSource,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** First start: the key exists before the first token is asked for (and its JWKS is published). */
  async onApplicationBootstrap(): Promise<void> {
    await this.signingKey();
  }

  async signingKey(): Promise<{ kid: string; key: Awaited<ReturnType<typeof importJWK>> }> {
    if (this.config.signingKey) {
      const jwk = JSON.parse(this.config.signingKey) as JWK;
      return { kid: jwk.kid ?? 'env', key: await importJWK(jwk, jwk.alg ?? ACCESS_TOKEN_ALG) };
    }
    const row = (await this.activeKeys())[0] ?? (await this.createKey());
    return { kid: row.kid, key: await importJWK(row.private_jwk, row.alg) };
  }

  /** Public keys valid for verification now (active and recently retired). */
  async publicJwks(): Promise<JSONWebKeySet> {
    if (this.config.signingKey) {
      const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...pub } = JSON.parse(this.config.signingKey) as JWK;
      return { keys: [{ ...pub, kid: pub.kid ?? 'env', use: 'sig', alg: pub.alg ?? ACCESS_TOKEN_ALG }] };
    }
    const rows: KeyRow[] = await this.db.query(
      `SELECT kid, alg, private_jwk, public_jwk FROM signing_key
        WHERE retired_at IS NULL OR retired_at > now() - make_interval(secs => $1)
        ORDER BY created_at DESC`,
      [RETIRED_KEY_GRACE_SECONDS],
    );
    return { keys: rows.map((r) => ({ ...r.public_jwk, kid: r.kid, alg: r.alg, use: 'sig' })) };
  }

  /** New active key; the previous ones are retired but still verify tokens in flight. */
  async rotate(): Promise<string> {
    return this.db.transaction(async (tx) => {
      await tx.query(`SELECT pg_advisory_xact_lock(hashtextextended('signing_key', 0))`);
      await tx.query(`UPDATE signing_key SET retired_at = now() WHERE retired_at IS NULL`);
      return (await this.insertKey(tx.query.bind(tx))).kid;
    });
  }

  private async activeKeys(): Promise<KeyRow[]> {
    return this.db.query(
      `SELECT kid, alg, private_jwk, public_jwk FROM signing_key WHERE retired_at IS NULL ORDER BY created_at DESC LIMIT 1`,
    );
  }

  /** First start: one node generates the key; concurrent starters wait on the lock and reuse it. */
  private async createKey(): Promise<KeyRow> {
    return this.db.transaction(async (tx) => {
      await tx.query(`SELECT pg_advisory_xact_lock(hashtextextended('signing_key', 0))`);
      const existing: KeyRow[] = await tx.query(
        `SELECT kid, alg, private_jwk, public_jwk FROM signing_key WHERE retired_at IS NULL ORDER BY created_at DESC LIMIT 1`,
      );
      return existing[0] ?? this.insertKey(tx.query.bind(tx));
    });
  }

  private async insertKey(query: (sql: string, params: unknown[]) => Promise<unknown>): Promise<KeyRow> {
    const { privateKey, publicKey } = await generateKeyPair(ACCESS_TOKEN_ALG, { extractable: true });
    const row: KeyRow = {
      kid: randomUUID(),
      alg: ACCESS_TOKEN_ALG,
      private_jwk: await exportJWK(privateKey),
      public_jwk: await exportJWK(publicKey),
    };
    await query(`INSERT INTO signing_key (kid, alg, private_jwk, public_jwk) VALUES ($1, $2, $3, $4)`, [
      row.kid,
      row.alg,
      JSON.stringify(row.private_jwk),
      JSON.stringify(row.public_jwk),
    ]);
    return row;
  }
}
