import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { KeyEncryption, SealedValue } from './key-encryption';

const SCHEME = 'hmac-sha256';
const KEY_NAME = 'client-secret-hmac';
/** Compared against when there is nothing to compare with (unknown id, no secret, old format). */
const DUMMY_MAC = randomBytes(32);

/**
 * Client secrets are 256-bit random values generated here (or an operator's bootstrap secret), so
 * a slow password hash buys nothing and let every wrong guess cost an scrypt: they are stored as
 * `hmac-sha256$<HMAC-SHA-256(server key, secret)>`. The server key is generated on first use and
 * kept in `server_key` (encrypted with HIE_KEY_ENCRYPTION_KEY when set), shared by all nodes.
 * Verification costs one HMAC whether the client exists or not, and compares in constant time.
 */
@Injectable()
export class ClientSecretHasher implements OnApplicationBootstrap {
  private readonly logger = new Logger('Auth');
  private key?: Promise<Buffer>;

  constructor(
    @InjectDataSource() private readonly db: DataSource,
    private readonly encryption: KeyEncryption,
  ) {}

  /** Loads (or creates, or encrypts) the key at start, so a wrong HIE_KEY_ENCRYPTION_KEY stops the start. */
  async onApplicationBootstrap(): Promise<void> {
    await this.hmacKey();
    const [{ n }] = await this.db.query(`SELECT count(*)::int AS n FROM oauth_client WHERE secret_hash LIKE 'scrypt$%'`);
    if (n > 0) {
      this.logger.warn(
        `${n} client(s) have a secret in the old scrypt format, which is no longer accepted: give each a new one with ` +
          'npm run -s cli -- client rotate-secret ID (or POST /admin/clients/ID/rotate-secret)',
      );
    }
  }

  async hash(secret: string): Promise<string> {
    return `${SCHEME}$${this.mac(await this.hmacKey(), secret).toString('base64url')}`;
  }

  /** True when `secret` matches `stored`; the same work when `stored` is missing or of another format. */
  async verify(secret: string, stored: string | undefined): Promise<boolean> {
    const actual = this.mac(await this.hmacKey(), secret);
    const [scheme, encoded, extra] = (stored ?? '').split('$');
    const decoded = scheme === SCHEME && encoded && extra === undefined ? Buffer.from(encoded, 'base64url') : undefined;
    const usable = decoded?.length === actual.length;
    const equal = timingSafeEqual(actual, usable ? decoded : DUMMY_MAC);
    return usable && equal;
  }

  private mac(key: Buffer, secret: string): Buffer {
    return createHmac('sha256', key).update(secret, 'utf8').digest();
  }

  private hmacKey(): Promise<Buffer> {
    this.key ??= this.loadKey().catch((err: unknown) => {
      this.key = undefined;
      throw err;
    });
    return this.key;
  }

  /** One node creates the key; concurrent starters wait on the lock and read it. */
  private async loadKey(): Promise<Buffer> {
    return this.db.transaction(async (tx) => {
      await tx.query(`SELECT pg_advisory_xact_lock(hashtextextended('server_key', 0))`);
      const rows: { value: { key: string } | SealedValue }[] = await tx.query(`SELECT value FROM server_key WHERE name = $1`, [KEY_NAME]);
      if (!rows[0]) {
        const plain = { key: randomBytes(32).toString('base64') };
        await tx.query(`INSERT INTO server_key (name, value) VALUES ($1, $2)`, [KEY_NAME, JSON.stringify(this.stored(plain))]);
        return Buffer.from(plain.key, 'base64');
      }
      const plain = this.encryption.open(rows[0].value, KEY_NAME, 'The client-secret HMAC key (table server_key)');
      if (this.encryption.enabled && !KeyEncryption.isSealed(rows[0].value)) {
        // Stored before HIE_KEY_ENCRYPTION_KEY was set: encrypt it now.
        await tx.query(`UPDATE server_key SET value = $2 WHERE name = $1`, [KEY_NAME, JSON.stringify(this.stored(plain))]);
      }
      return Buffer.from(plain.key, 'base64');
    });
  }

  private stored(plain: { key: string }): { key: string } | SealedValue {
    return this.encryption.enabled ? this.encryption.seal(plain, KEY_NAME) : plain;
  }
}
