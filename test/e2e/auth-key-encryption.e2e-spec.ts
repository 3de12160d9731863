import { randomBytes } from 'node:crypto';
import { Test } from '@nestjs/testing';
import { decodeProtectedHeader } from 'jose';
import { Client } from 'pg';
import request from 'supertest';
import { AppModule } from '../../src/app.module';
import { configureApp } from '../../src/app.setup';
import { kekFingerprint } from '../../src/auth/key-encryption';
import { runCli } from '../../src/cli/cli';
import { ConfigurationError } from '../../src/config/app.config';
import { registerTestClient } from '../support/auth';
import { createTestApp, TestApp } from '../support/test-app';

/**
 * HIE_KEY_ENCRYPTION_KEY (issue 9, item 14): the token-signing private keys and the client-secret
 * HMAC key are stored encrypted. The database is shared with the other test files, so the rows
 * this file encrypts are put back as they were at the end.
 */
describe('signing keys encrypted at rest', () => {
  let t: TestApp;
  /** A plain connection: the app cannot start on these rows without the right key. */
  let db: Client;
  let signingKeys: Record<string, unknown>[];
  let serverKeys: Record<string, unknown>[];
  const kek = randomBytes(32).toString('base64');
  const previous = process.env.HIE_KEY_ENCRYPTION_KEY;

  const setKek = (value: string | undefined) => {
    if (value === undefined) delete process.env.HIE_KEY_ENCRYPTION_KEY;
    else process.env.HIE_KEY_ENCRYPTION_KEY = value;
  };
  /** Boots the app and expects its start to fail. */
  const startFails = async (): Promise<Error> => {
    const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
    const app = moduleRef.createNestApplication({ bodyParser: false, bufferLogs: true });
    configureApp(app);
    try {
      await app.init();
    } catch (err) {
      return err as Error;
    } finally {
      await app.close().catch(() => undefined);
    }
    throw new Error('expected the start to fail');
  };

  beforeAll(async () => {
    setKek(undefined);
    // Without the key: the rows as every other test file has them (plain).
    t = await createTestApp();
    await t.close();
    db = new Client({ connectionString: process.env.DATABASE_URL });
    await db.connect();
    signingKeys = (await db.query(`SELECT * FROM signing_key`)).rows;
    serverKeys = (await db.query(`SELECT * FROM server_key`)).rows;
  });
  afterAll(async () => {
    // Put the plain rows back (the other test files run without the key), dropping rotated keys.
    await db.query('BEGIN');
    await db.query(`DELETE FROM signing_key`);
    for (const k of signingKeys) {
      await db.query(`INSERT INTO signing_key (kid, alg, private_jwk, public_jwk, created_at, retired_at) VALUES ($1, $2, $3, $4, $5, $6)`, [
        k.kid,
        k.alg,
        JSON.stringify(k.private_jwk),
        JSON.stringify(k.public_jwk),
        k.created_at,
        k.retired_at,
      ]);
    }
    for (const k of serverKeys) await db.query(`UPDATE server_key SET value = $2 WHERE name = $1`, [k.name, JSON.stringify(k.value)]);
    await db.query('COMMIT');
    await db.end();
    setKek(previous);
  });

  it('a start with the key encrypts the stored keys; tokens are still signed and verified', async () => {
    expect(signingKeys.length).toBeGreaterThan(0);
    expect(JSON.stringify(signingKeys.map((r) => r.private_jwk))).toContain('"d"');
    setKek(kek);
    t = await createTestApp();
    try {
      const stored: { kid: string; private_jwk: Record<string, unknown> }[] = await t.db.query(`SELECT kid, private_jwk FROM signing_key`);
      expect(stored.length).toBe(signingKeys.length);
      for (const row of stored) {
        expect(Object.keys(row.private_jwk).sort()).toEqual(['ct', 'enc', 'iv', 'kek', 'tag']);
        expect(row.private_jwk).toMatchObject({ enc: 'A256GCM', kek: kekFingerprint(Buffer.from(kek, 'base64')) });
        const before = signingKeys.find((k) => k.kid === row.kid)!.private_jwk as { d: string };
        expect(JSON.stringify(row.private_jwk)).not.toContain(before.d);
      }
      const [{ value }] = await t.db.query(`SELECT value FROM server_key WHERE name = 'client-secret-hmac'`);
      expect(Object.keys(value).sort()).toEqual(['ct', 'enc', 'iv', 'kek', 'tag']);
      expect(JSON.stringify(value)).not.toContain((serverKeys[0].value as { key: string }).key);

      // Secrets registered before still verify (same HMAC key), tokens are signed and accepted.
      const client = await registerTestClient(t, { role: 'hospital', scopes: ['system/Patient.rs'] });
      const token = await client.token();
      expect((await request(t.http).get('/fhir/Patient?_count=1').set('Authorization', `Bearer ${token}`)).status).toBe(200);
      const jwks = (await request(t.http).get('/.well-known/jwks.json')).body.keys;
      expect(jwks.map((k: { kid: string }) => k.kid)).toContain(decodeProtectedHeader(token).kid);
      expect(JSON.stringify(jwks)).not.toMatch(/"d"|"enc"|"ct"/);

      // A key made by rotation (the CLI, with the same environment) is stored encrypted from the start.
      const rotated = await runCli(['key', 'rotate'], { out: () => undefined, err: () => undefined });
      expect(rotated).toBe(0);
      const plain = await t.db.query(`SELECT kid FROM signing_key WHERE NOT private_jwk ? 'enc' OR private_jwk ? 'd'`);
      expect(plain).toEqual([]);
      const next = await client.token();
      expect(decodeProtectedHeader(next).kid).not.toBe(decodeProtectedHeader(token).kid);
      expect((await request(t.http).get('/fhir/Patient?_count=1').set('Authorization', `Bearer ${next}`)).status).toBe(200);
    } finally {
      await t.close();
    }
  });

  it('a different key, or none, stops the start with an error naming HIE_KEY_ENCRYPTION_KEY, changing nothing', async () => {
    const before = await snapshot();
    setKek(randomBytes(32).toString('base64'));
    const wrong = await startFails();
    expect(wrong).toBeInstanceOf(ConfigurationError);
    expect(wrong.message).toMatch(/was encrypted with a different HIE_KEY_ENCRYPTION_KEY than the one configured \(key fingerprint [0-9a-f]{16}, configured [0-9a-f]{16}\)$/);
    setKek(undefined);
    const none = await startFails();
    expect(none).toBeInstanceOf(ConfigurationError);
    expect(none.message).toMatch(/is encrypted at rest: set HIE_KEY_ENCRYPTION_KEY to the key it was encrypted with$/);
    expect(await snapshot()).toEqual(before);
  });

  async function snapshot() {
    return {
      signing: (await db.query(`SELECT kid, private_jwk, retired_at FROM signing_key ORDER BY kid`)).rows,
      server: (await db.query(`SELECT name, value FROM server_key ORDER BY name`)).rows,
    };
  }
});
