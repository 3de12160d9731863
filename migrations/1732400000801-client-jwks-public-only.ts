import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Registration used to store a client's JWKS as sent, private members and symmetric keys included.
 * Keep only what verification needs: drop `oct` keys and the private members of the others.
 */
export class ClientJwksPublicOnly1732400000801 implements MigrationInterface {
  name = 'ClientJwksPublicOnly1732400000801';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      UPDATE oauth_client c
         SET jwks = jsonb_build_object('keys', coalesce(
               (SELECT jsonb_agg(k - ARRAY['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'])
                  FROM jsonb_array_elements(c.jwks -> 'keys') AS k
                 WHERE k ->> 'kty' IS DISTINCT FROM 'oct'),
               '[]'::jsonb)),
             updated_at = now()
       WHERE jsonb_typeof(c.jwks -> 'keys') = 'array'
         AND EXISTS (SELECT 1 FROM jsonb_array_elements(c.jwks -> 'keys') AS k
                      WHERE k ?| ARRAY['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] OR k ->> 'kty' = 'oct')`);
  }

  async down(): Promise<void> {
    // Removed private key material is not restored.
  }
}
