import { ConfigurationError, loadAppConfig } from './app.config';

describe('loadAppConfig', () => {
  const fails = (env: NodeJS.ProcessEnv) => {
    try {
      loadAppConfig(env);
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigurationError);
      return (err as Error).message;
    }
    throw new Error('expected a ConfigurationError');
  };

  it('gives the documented defaults', () => {
    const c = loadAppConfig({});
    expect(c).toMatchObject({
      port: 8080,
      embeddedPgDir: './data/postgres',
      embeddedPgPort: 54329,
      fhirBaseUrl: 'http://localhost:8080/fhir',
      tokenUrl: 'http://localhost:8080/oauth2/token',
      bodyLimit: '16mb',
      accessTokenTtlSeconds: 300,
      dbStatementTimeoutMs: 30_000,
      corsOrigins: [],
    });
    expect(c.databaseUrl).toBeUndefined();
  });

  it('bounds the cost of one resource: documented defaults, overridable, refused out of range', () => {
    expect(loadAppConfig({}).resourceCost).toEqual({ maxArrayLength: 10_000, maxElements: 100_000, maxIndexRows: 20_000 });
    expect(loadAppConfig({ FHIR_MAX_ARRAY_LENGTH: '500', FHIR_MAX_RESOURCE_ELEMENTS: '5000', FHIR_MAX_INDEX_ROWS: '2000' }).resourceCost).toEqual({
      maxArrayLength: 500,
      maxElements: 5000,
      maxIndexRows: 2000,
    });
    expect(fails({ FHIR_MAX_ARRAY_LENGTH: '0' })).toBe('Invalid configuration: FHIR_MAX_ARRAY_LENGTH: must be a number of elements from 100 to 1000000');
  });

  it('names the bad variable and what is wrong, without echoing the value', () => {
    expect(fails({ PORT: 'abc' })).toBe('Invalid configuration: PORT: must be a port number from 1 to 65535');
    expect(fails({ EMBEDDED_PG_PORT: '70000' })).toBe('Invalid configuration: EMBEDDED_PG_PORT: must be a port number from 1 to 65535');
    expect(fails({ DATABASE_URL: 'mysql://u:secret-pw@h/db' })).toBe('Invalid configuration: DATABASE_URL: must be a postgres:// URL');
    expect(fails({ BODY_LIMIT: 'lots' })).toMatch(/^Invalid configuration: BODY_LIMIT: /);
    const key = fails({ HIE_SIGNING_KEY: '{"kty":"RSA","d":"very-secret"}' });
    expect(key).toMatch(/^Invalid configuration: HIE_SIGNING_KEY: must be a private ES256 key/);
    expect(key).not.toContain('very-secret');
    const kek = fails({ HIE_KEY_ENCRYPTION_KEY: 'not-32-bytes-secret' });
    expect(kek).toBe('Invalid configuration: HIE_KEY_ENCRYPTION_KEY: must be 32 random bytes in base64 (openssl rand -base64 32)');
    expect(fails({ HIE_KEY_ENCRYPTION_KEY: Buffer.alloc(31, 7).toString('base64') })).toMatch(/^Invalid configuration: HIE_KEY_ENCRYPTION_KEY: /);
    expect(fails({ RATE_LIMIT_TOKEN_FAILURES_PER_ADDRESS: '0' })).toBe('Invalid configuration: RATE_LIMIT_TOKEN_FAILURES_PER_ADDRESS: must be an integer from 1 to 1000000');
    expect(fails({ DB_STATEMENT_TIMEOUT_MS: '-1' })).toBe('Invalid configuration: DB_STATEMENT_TIMEOUT_MS: must be a number of milliseconds from 0 to 86400000');
    expect(fails({ HIE_BOOTSTRAP_ADMIN_SECRET: 'short' })).toBe('Invalid configuration: HIE_BOOTSTRAP_ADMIN_SECRET: must be at least 24 characters');
  });

  it('accepts a 32-byte key-encryption key in base64 or base64url', () => {
    const key = Buffer.alloc(32, 0xfb);
    expect(loadAppConfig({ HIE_KEY_ENCRYPTION_KEY: key.toString('base64') }).keyEncryptionKey).toBe(key.toString('base64'));
    expect(loadAppConfig({ HIE_KEY_ENCRYPTION_KEY: key.toString('base64url') }).keyEncryptionKey).toBe(key.toString('base64url'));
    expect(loadAppConfig({})).toMatchObject({ keyEncryptionKey: undefined, tokenFailuresPerAddress: 100, tokenFailuresPerClaimedId: 20 });
  });

  it('audit commits: no gathering wait and durable reads by default; AUDIT_READ_COMMIT=relaxed opts in, anything else is refused', () => {
    expect(loadAppConfig({}).audit).toEqual({ store: true, groupCommitWaitMs: 0, groupCommitMax: 500, relaxedReadCommit: false });
    expect(loadAppConfig({ AUDIT_READ_COMMIT: 'relaxed', AUDIT_GROUP_COMMIT_WAIT_MS: '2' }).audit).toMatchObject({ groupCommitWaitMs: 2, relaxedReadCommit: true });
    expect(loadAppConfig({ AUDIT_READ_COMMIT: 'durable' }).audit.relaxedReadCommit).toBe(false);
    expect(fails({ AUDIT_READ_COMMIT: 'off' })).toMatch(/^Invalid configuration: AUDIT_READ_COMMIT: /);
  });

  it('TRUST_PROXY: off by default; true, a hop count, or proxy addresses', () => {
    expect(loadAppConfig({}).trustProxy).toBe(false);
    expect(loadAppConfig({ TRUST_PROXY: 'true' }).trustProxy).toBe(true);
    expect(loadAppConfig({ TRUST_PROXY: '2' }).trustProxy).toBe(2);
    expect(loadAppConfig({ TRUST_PROXY: 'loopback, 10.0.0.0/8' }).trustProxy).toBe('loopback, 10.0.0.0/8');
    expect(fails({ TRUST_PROXY: 'any proxy!' })).toMatch(/^Invalid configuration: TRUST_PROXY: must be true, false/);
  });

  it('refuses AUDIT_STORE=off outside tests and benchmarks: a production server always stores its audit trail', () => {
    const refused = 'Invalid configuration: AUDIT_STORE: may be off only in tests (NODE_ENV=test) or benchmarks (HIE_BENCHMARK=true); without the store no access is recorded';
    expect(fails({ AUDIT_STORE: 'off', NODE_ENV: 'production' })).toBe(refused);
    expect(fails({ AUDIT_STORE: 'off' })).toBe(refused);
    expect(fails({ AUDIT_STORE: 'off', NODE_ENV: 'development', HIE_BENCHMARK: 'false' })).toBe(refused);
    expect(fails({ AUDIT_STORE: 'off', NODE_ENV: 'production', HIE_BENCHMARK: 'yes' })).toBe('Invalid configuration: HIE_BENCHMARK: must be true or false');
    expect(loadAppConfig({ AUDIT_STORE: 'off', NODE_ENV: 'test' }).audit.store).toBe(false);
    expect(loadAppConfig({ AUDIT_STORE: 'off', HIE_BENCHMARK: 'true' }).audit.store).toBe(false);
    expect(loadAppConfig({ AUDIT_STORE: 'on', NODE_ENV: 'production' }).audit.store).toBe(true);
    expect(loadAppConfig({ NODE_ENV: 'production' }).audit.store).toBe(true);
  });

  it('takes a separate migration URL only beside DATABASE_URL', () => {
    const c = loadAppConfig({ DATABASE_URL: 'postgres://hie_app:a@h/hie', DATABASE_MIGRATION_URL: 'postgres://hie_owner:b@h/hie' });
    expect(c.databaseUrl).toBe('postgres://hie_app:a@h/hie');
    expect(c.databaseMigrationUrl).toBe('postgres://hie_owner:b@h/hie');
    expect(fails({ DATABASE_MIGRATION_URL: 'postgres://hie_owner:b@h/hie' })).toBe(
      'Invalid configuration: DATABASE_MIGRATION_URL: needs DATABASE_URL (the embedded PostgreSQL has its own migration role)',
    );
    expect(fails({ DATABASE_URL: 'postgres://h/hie', DATABASE_MIGRATION_URL: 'mysql://u:pw@h/db' })).toBe(
      'Invalid configuration: DATABASE_MIGRATION_URL: must be a postgres:// URL',
    );
  });

  it('turns CORS off unless origins are listed', () => {
    expect(loadAppConfig({ CORS_ORIGINS: 'https://a.example, https://b.example' }).corsOrigins).toEqual(['https://a.example', 'https://b.example']);
  });

  it('REFERRAL_ACCESS_DAYS: 30 days by default, 0 to 3650', () => {
    expect(loadAppConfig({}).referralAccessDays).toBe(30);
    expect(loadAppConfig({ REFERRAL_ACCESS_DAYS: '0' }).referralAccessDays).toBe(0);
    expect(fails({ REFERRAL_ACCESS_DAYS: '3651' })).toBe('Invalid configuration: REFERRAL_ACCESS_DAYS: must be a number of days from 0 to 3650');
  });
});
