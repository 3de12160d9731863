import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, AppConfig, ConfigurationError } from '../config/app.config';

/** A value encrypted at rest with HIE_KEY_ENCRYPTION_KEY (stored as jsonb in place of the plain value). */
export interface SealedValue {
  enc: 'A256GCM';
  /** Fingerprint of the key-encryption key, so a wrong key is named as such rather than as corrupt data. */
  kek: string;
  iv: string;
  ct: string;
  tag: string;
}

/**
 * Encrypts server secrets kept in the database (token-signing private keys, the client-secret HMAC
 * key) with AES-256-GCM under a key from the environment, so a copy of the database alone does not
 * hold them. `aad` binds a sealed value to its row (the key id), so rows cannot be swapped.
 */
@Injectable()
export class KeyEncryption {
  private readonly key?: Buffer;
  readonly fingerprint?: string;

  constructor(@Inject(APP_CONFIG) config: Pick<AppConfig, 'keyEncryptionKey'>) {
    if (config.keyEncryptionKey) {
      this.key = Buffer.from(config.keyEncryptionKey, 'base64');
      this.fingerprint = kekFingerprint(this.key);
    }
  }

  get enabled(): boolean {
    return this.key !== undefined;
  }

  static isSealed(value: unknown): value is SealedValue {
    return typeof value === 'object' && value !== null && (value as { enc?: unknown }).enc === 'A256GCM';
  }

  seal(value: unknown, aad: string): SealedValue {
    if (!this.key) throw new Error('no HIE_KEY_ENCRYPTION_KEY configured');
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv).setAAD(Buffer.from(aad, 'utf8'));
    const ct = Buffer.concat([cipher.update(JSON.stringify(value), 'utf8'), cipher.final()]);
    return { enc: 'A256GCM', kek: this.fingerprint!, iv: iv.toString('base64url'), ct: ct.toString('base64url'), tag: cipher.getAuthTag().toString('base64url') };
  }

  /** The plain value of a stored one (plain values, stored before encryption was on, pass through). */
  open<T>(stored: T | SealedValue, aad: string, what: string): T {
    if (!KeyEncryption.isSealed(stored)) return stored as T;
    if (!this.key) {
      throw new ConfigurationError(`${what} is encrypted at rest: set HIE_KEY_ENCRYPTION_KEY to the key it was encrypted with`);
    }
    if (stored.kek !== this.fingerprint) {
      throw new ConfigurationError(`${what} was encrypted with a different HIE_KEY_ENCRYPTION_KEY than the one configured (key fingerprint ${stored.kek}, configured ${this.fingerprint})`);
    }
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.key, Buffer.from(stored.iv, 'base64url')).setAAD(Buffer.from(aad, 'utf8'));
      decipher.setAuthTag(Buffer.from(stored.tag, 'base64url'));
      return JSON.parse(Buffer.concat([decipher.update(Buffer.from(stored.ct, 'base64url')), decipher.final()]).toString('utf8')) as T;
    } catch {
      throw new ConfigurationError(`${what} could not be decrypted with HIE_KEY_ENCRYPTION_KEY (altered or moved row)`);
    }
  }
}

/** A short public name for a key-encryption key: 8 bytes of its SHA-256, which reveal nothing of a random 256-bit key. */
export function kekFingerprint(key: Buffer): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 16);
}
