// The module object itself (not an import wrapper), so jest can spy on what the hasher calls.
import crypto = require('node:crypto');
import type { DataSource } from 'typeorm';
import { ClientSecretHasher } from './client-secret.hasher';
import { KeyEncryption } from './key-encryption';

/** The hasher on a stand-in database that already holds this HMAC key in server_key. */
function hasherWithKey(key: Buffer): ClientSecretHasher {
  const tx = { query: async (sql: string) => (sql.startsWith('SELECT value') ? [{ value: { key: key.toString('base64') } }] : []) };
  const db = { transaction: async (work: (t: typeof tx) => Promise<unknown>) => work(tx) } as unknown as DataSource;
  return new ClientSecretHasher(db, new KeyEncryption({}));
}

describe('ClientSecretHasher', () => {
  const key = crypto.randomBytes(32);
  const secret = crypto.randomBytes(32).toString('base64url');
  const hasher = hasherWithKey(key);
  afterEach(() => jest.restoreAllMocks());

  it('stores HMAC-SHA-256 of the secret under the server key', async () => {
    const expected = crypto.createHmac('sha256', key).update(secret).digest('base64url');
    expect(await hasher.hash(secret)).toBe(`hmac-sha256$${expected}`);
    // Keyed: another server key gives another hash for the same secret.
    expect(await hasherWithKey(crypto.randomBytes(32)).hash(secret)).not.toBe(`hmac-sha256$${expected}`);
  });

  it('accepts only the right secret in the current format', async () => {
    const stored = await hasher.hash(secret);
    expect(await hasher.verify(secret, stored)).toBe(true);
    expect(await hasher.verify(`${secret}x`, stored)).toBe(false);
    expect(await hasher.verify(secret, undefined)).toBe(false);
    expect(await hasher.verify(secret, `${stored}$extra`)).toBe(false);
    expect(await hasher.verify(secret, 'hmac-sha256$c2hvcnQ')).toBe(false);
    // An old scrypt hash of this very secret is refused (the client's secret must be rotated).
    const salt = crypto.randomBytes(16);
    const legacy = `scrypt$${salt.toString('base64url')}$${crypto.scryptSync(secret, salt, 32).toString('base64url')}`;
    expect(await hasher.verify(secret, legacy)).toBe(false);
  });

  it('does the same work (one HMAC, one constant-time compare, no scrypt) for a known, unknown or secret-less client', async () => {
    const stored = await hasher.hash(secret);
    const hmac = jest.spyOn(crypto, 'createHmac');
    const compare = jest.spyOn(crypto, 'timingSafeEqual');
    const scrypt = jest.spyOn(crypto, 'scrypt');
    const scryptSync = jest.spyOn(crypto, 'scryptSync');
    for (const candidate of [stored, undefined, 'scrypt$abc$def']) {
      hmac.mockClear();
      compare.mockClear();
      await hasher.verify('wrong-secret', candidate);
      expect([hmac.mock.calls.length, compare.mock.calls.length]).toEqual([1, 1]);
      expect(hmac.mock.calls[0][0]).toBe('sha256');
    }
    expect(scrypt).not.toHaveBeenCalled();
    expect(scryptSync).not.toHaveBeenCalled();
  });
});
