import { z } from 'zod';

/**
 * Environment schema. Validated once at start; a bad variable stops the process with a message naming it.
 */
const integer = (min: number, max: number, fallback: number, what = 'an integer') => {
  const message = `must be ${what} from ${min} to ${max}`;
  return z.coerce.number({ error: message }).int(message).min(min, message).max(max, message).default(fallback);
};
const port = (fallback: number) => integer(1, 65535, fallback, 'a port number');

/** A private JWK (JSON) for ES256, the access-token algorithm. */
const signingKey = z.string().refine((value) => {
  try {
    const jwk = JSON.parse(value) as Record<string, unknown>;
    return typeof jwk.d === 'string' && jwk.kty === 'EC' && jwk.crv === 'P-256' && (jwk.alg === undefined || jwk.alg === 'ES256');
  } catch {
    return false;
  }
}, 'must be a private ES256 key as a JWK in JSON (kty EC, crv P-256, with "d")');

const envSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  PORT: port(8080),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL')
    .optional(),
  EMBEDDED_PG_DIR: z.string().min(1).default('./data/postgres'),
  EMBEDDED_PG_PORT: port(54329),
  PUBLIC_BASE_URL: z.string().url().optional(),
  FHIR_BASE_PATH: z
    .string()
    .regex(/^\/[A-Za-z0-9_\-/]*[A-Za-z0-9_\-]$/, 'must start with / and not end with /')
    .default('/fhir'),
  BODY_LIMIT: z
    .string()
    .regex(/^\d+(b|kb|mb|gb)?$/i, 'must be a size such as 16mb')
    .default('16mb'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  DB_POOL_SIZE: integer(1, 500, 20),
  /** 0 turns the limit off. */
  DB_STATEMENT_TIMEOUT_MS: integer(0, 86_400_000, 30_000, 'a number of milliseconds'),
  ACCESS_TOKEN_TTL_SECONDS: integer(30, 3600, 300, 'a number of seconds'),
  RATE_LIMIT_PER_MINUTE: integer(1, 1_000_000, 1200),
  CORS_ORIGINS: z.string().optional(),
  HIE_SIGNING_KEY: signingKey.optional(),
  HIE_BOOTSTRAP_ADMIN_CLIENT_ID: z.string().regex(/^[A-Za-z0-9\-_.]{3,64}$/, 'must be 3-64 of [A-Za-z0-9-_.]').optional(),
  HIE_BOOTSTRAP_ADMIN_SECRET: z.string().min(24, 'must be at least 24 characters').optional(),
});

export type Env = z.infer<typeof envSchema>;

export interface AppConfig {
  nodeEnv: Env['NODE_ENV'];
  port: number;
  databaseUrl?: string;
  embeddedPgDir: string;
  embeddedPgPort: number;
  publicBaseUrl: string;
  fhirBasePath: string;
  /** Absolute base URL of the FHIR endpoint, used in Location, fullUrl and paging links. */
  fhirBaseUrl: string;
  bodyLimit: string;
  logLevel: Env['LOG_LEVEL'];
  dbPoolSize: number;
  /** Longest a single SQL statement of the server may run (PostgreSQL statement_timeout); 0: no limit. */
  dbStatementTimeoutMs: number;
  accessTokenTtlSeconds: number;
  rateLimitPerMinute: number;
  /** Allowed CORS origins; empty means CORS is off. */
  corsOrigins: string[];
  /** A private JWK (JSON) to sign access tokens with, instead of a generated key kept in the database. */
  signingKey?: string;
  bootstrapAdmin?: { clientId: string; secret: string };
  /** Token endpoint URL (the `aud` of client assertions). */
  tokenUrl: string;
}

export class ConfigurationError extends Error {}

export function loadAppConfig(env: NodeJS.ProcessEnv = process.env): AppConfig {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    // Names the variable and what is wrong, never its value (it may be a secret).
    const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new ConfigurationError(`Invalid configuration: ${problems}`);
  }
  const e = parsed.data;
  const publicBaseUrl = (e.PUBLIC_BASE_URL ?? `http://localhost:${e.PORT}`).replace(/\/$/, '');
  return {
    nodeEnv: e.NODE_ENV,
    port: e.PORT,
    databaseUrl: e.DATABASE_URL,
    embeddedPgDir: e.EMBEDDED_PG_DIR,
    embeddedPgPort: e.EMBEDDED_PG_PORT,
    publicBaseUrl,
    fhirBasePath: e.FHIR_BASE_PATH,
    fhirBaseUrl: publicBaseUrl + e.FHIR_BASE_PATH,
    bodyLimit: e.BODY_LIMIT,
    logLevel: e.LOG_LEVEL,
    dbPoolSize: e.DB_POOL_SIZE,
    dbStatementTimeoutMs: e.DB_STATEMENT_TIMEOUT_MS,
    accessTokenTtlSeconds: e.ACCESS_TOKEN_TTL_SECONDS,
    rateLimitPerMinute: e.RATE_LIMIT_PER_MINUTE,
    corsOrigins: (e.CORS_ORIGINS ?? '').split(',').map((o) => o.trim()).filter(Boolean),
    signingKey: e.HIE_SIGNING_KEY,
    bootstrapAdmin:
      e.HIE_BOOTSTRAP_ADMIN_CLIENT_ID && e.HIE_BOOTSTRAP_ADMIN_SECRET
        ? { clientId: e.HIE_BOOTSTRAP_ADMIN_CLIENT_ID, secret: e.HIE_BOOTSTRAP_ADMIN_SECRET }
        : undefined,
    tokenUrl: `${publicBaseUrl}/oauth2/token`,
  };
}

export const APP_CONFIG = Symbol('APP_CONFIG');
