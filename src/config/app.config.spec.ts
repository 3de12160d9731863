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

  it('names the bad variable and what is wrong, without echoing the value', () => {
    expect(fails({ PORT: 'abc' })).toBe('Invalid configuration: PORT: must be a port number from 1 to 65535');
    expect(fails({ EMBEDDED_PG_PORT: '70000' })).toBe('Invalid configuration: EMBEDDED_PG_PORT: must be a port number from 1 to 65535');
    expect(fails({ DATABASE_URL: 'mysql://u:secret-pw@h/db' })).toBe('Invalid configuration: DATABASE_URL: must be a postgres:// URL');
    expect(fails({ BODY_LIMIT: 'lots' })).toMatch(/^Invalid configuration: BODY_LIMIT: /);
    const key = fails({ HIE_SIGNING_KEY: '{"kty":"RSA","d":"very-secret"}' });
    expect(key).toMatch(/^Invalid configuration: HIE_SIGNING_KEY: must be a private ES256 key/);
    expect(key).not.toContain('very-secret');
    expect(fails({ DB_STATEMENT_TIMEOUT_MS: '-1' })).toBe('Invalid configuration: DB_STATEMENT_TIMEOUT_MS: must be a number of milliseconds from 0 to 86400000');
    expect(fails({ HIE_BOOTSTRAP_ADMIN_SECRET: 'short' })).toBe('Invalid configuration: HIE_BOOTSTRAP_ADMIN_SECRET: must be at least 24 characters');
  });

  it('turns CORS off unless origins are listed', () => {
    expect(loadAppConfig({ CORS_ORIGINS: 'https://a.example, https://b.example' }).corsOrigins).toEqual(['https://a.example', 'https://b.example']);
  });
});
