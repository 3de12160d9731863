import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Server-side keys other than the token-signing keys, shared by every app node: today the HMAC key
 * that client secrets are verified with. `value` is `{"key": base64}`, or that JSON encrypted with
 * HIE_KEY_ENCRYPTION_KEY (`{"enc": "A256GCM", …}`) when one is configured.
 */
export class ServerKey1732400000800 implements MigrationInterface {
  name = 'ServerKey1732400000800';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE server_key (
        name       text        PRIMARY KEY,
        value      jsonb       NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE server_key`);
  }
}
