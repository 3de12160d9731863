import type { MigrationInterface, QueryRunner } from 'typeorm';

/** Registered clients (SMART Backend Services), the server's signing keys, and used assertion ids. */
export class Auth1732400000200 implements MigrationInterface {
  name = 'Auth1732400000200';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE oauth_client (
        client_id       text        PRIMARY KEY,
        name            text        NOT NULL,
        organization    text        NOT NULL,
        role            text        NOT NULL CHECK (role IN ('hospital', 'public-health', 'auditor', 'admin')),
        scopes          text[]      NOT NULL,
        purposes        text[]      NOT NULL,
        clinical_access boolean     NOT NULL DEFAULT false,
        jwks            jsonb,
        secret_hash     text,
        disabled        boolean     NOT NULL DEFAULT false,
        created_at      timestamptz NOT NULL DEFAULT now(),
        updated_at      timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`
      CREATE TABLE signing_key (
        kid         text        PRIMARY KEY,
        alg         text        NOT NULL,
        private_jwk jsonb       NOT NULL,
        public_jwk  jsonb       NOT NULL,
        created_at  timestamptz NOT NULL DEFAULT now(),
        retired_at  timestamptz
      )`);
    await q.query(`
      CREATE TABLE used_client_assertion (
        client_id  text        NOT NULL,
        jti        text        NOT NULL,
        expires_at timestamptz NOT NULL,
        PRIMARY KEY (client_id, jti)
      )`);
    await q.query(`CREATE INDEX used_client_assertion_expires_idx ON used_client_assertion (expires_at)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE used_client_assertion`);
    await q.query(`DROP TABLE signing_key`);
    await q.query(`DROP TABLE oauth_client`);
  }
}
