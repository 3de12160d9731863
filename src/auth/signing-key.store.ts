import { randomUUID } from 'node:crypto';
import { Inject, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { exportJWK, generateKeyPair, importJWK, JWK, JSONWebKeySet } from 'jose';
import { DataSource } from 'typeorm';
import { APP_CONFIG, AppConfig } from '../config/app.config';
import { KeyEncryption, SealedValue } from './key-encryption';

export const ACCESS_TOKEN_ALG = 'ES256';
/** Retired keys stay published this long, longer than any token they signed can live. */
const RETIRED_KEY_GRACE_SECONDS = 3600;

interface KeyRow {
  kid: string;
  alg: string;
  /** Plain, or encrypted with HIE_KEY_ENCRYPTION_KEY (bound to the kid). */
  private_jwk: JWK | SealedValue;
  public_jwk: JWK;
}

/**
 * The server's token-signing keys, kept in Postgres so every app node signs and verifies with the
 * same keys (or given by HIE_SIGNING_KEY). Rotation adds a key and retires the old one; retired
 * public keys stay in the JWKS until tokens they signed have expired. With HIE_KEY_ENCRYPTION_KEY
 * the private parts are stored encrypted (AES-256-GCM); keys stored plain before are encrypted at
 * the next start.
 */
@Injectable()
export class SigningKeyStore implements OnApplicationBootstrap {
  private readonly logger = new Logger('Auth');

  constructor(
    @InjectDataSource() private readonly db: DataSource,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly encryption: KeyEncryption,
  ) {}

  /**
   * First start: the key exists before the first token is asked for (and its JWKS is published).
   * Decrypting it here makes a missing or wrong HIE_KEY_ENCRYPTION_KEY stop the start, not the first token request.
   */
  async onApplicationBootstrap(): Promise<void> {
    if (this.config.signingKey) {
      await this.signingKey();
      return;
    }
    if (this.encryption.enabled) await this.encryptPlainKeys();
    else {
      this.logger.warn(
        'HIE_KEY_ENCRYPTION_KEY is not set: the token-signing private key is stored unencrypted in the database ' +
          '(table signing_key), protected only by database access control and disk encryption; see README "Configuration"',
      );
    }
    await this.signingKey();
  }

  async signingKey(): Promise<{ kid: string; key: Awaited<ReturnType<typeof importJWK>> }> {
    if (this.config.signingKey) {
      const jwk = JSON.parse(this.config.signingKey) as JWK;
      return { kid: jwk.kid ?? 'env', key: await importJWK(jwk, jwk.alg ?? ACCESS_TOKEN_ALG) };
    }
    const row = (await this.activeKeys())[0] ?? (await this.createKey());
    return { kid: row.kid, key: await importJWK(this.privateJwk(row), row.alg) };
  }

  /** Public keys valid for verification now (active and recently retired). */
  async publicJwks(): Promise<JSONWebKeySet> {
    if (this.config.signingKey) {
      const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...pub } = JSON.parse(this.config.signingKey) as JWK;
      return { keys: [{ ...pub, kid: pub.kid ?? 'env', use: 'sig', alg: pub.alg ?? ACCESS_TOKEN_ALG }] };
    }
    const rows: Omit<KeyRow, 'private_jwk'>[] = await this.db.query(
      `SELECT kid, alg, public_jwk FROM signing_key
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

  private privateJwk(row: KeyRow): JWK {
    return this.encryption.open(row.private_jwk, row.kid, `The token-signing key ${row.kid} (table signing_key)`);
  }

  /** Keys stored before HIE_KEY_ENCRYPTION_KEY was set, retired ones too: no private key stays in clear. */
  private async encryptPlainKeys(): Promise<void> {
    await this.db.transaction(async (tx) => {
      await tx.query(`SELECT pg_advisory_xact_lock(hashtextextended('signing_key', 0))`);
      const plain: { kid: string; private_jwk: JWK }[] = await tx.query(`SELECT kid, private_jwk FROM signing_key WHERE NOT private_jwk ? 'enc'`);
      for (const row of plain) {
        await tx.query(`UPDATE signing_key SET private_jwk = $2 WHERE kid = $1`, [row.kid, JSON.stringify(this.encryption.seal(row.private_jwk, row.kid))]);
      }
      if (plain.length) this.logger.log({ msg: 'encrypted stored token-signing keys with HIE_KEY_ENCRYPTION_KEY', keys: plain.length });
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
    const kid = randomUUID();
    const privateJwk = await exportJWK(privateKey);
    const row: KeyRow = {
      kid,
      alg: ACCESS_TOKEN_ALG,
      private_jwk: this.encryption.enabled ? this.encryption.seal(privateJwk, kid) : privateJwk,
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
