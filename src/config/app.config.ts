import { z } from 'zod';

/**
 * Environment schema. Validated once at start; a bad variable stops the process with a message naming it.
 */
const envSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  PORT: z.coerce.number().int().min(1).max(65535).default(8080),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL')
    .optional(),
  EMBEDDED_PG_DIR: z.string().min(1).default('./data/postgres'),
  EMBEDDED_PG_PORT: z.coerce.number().int().min(1).max(65535).default(54329),
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
  DB_POOL_SIZE: z.coerce.number().int().min(1).max(500).default(20),
  ACCESS_TOKEN_TTL_SECONDS: z.coerce.number().int().min(30).max(3600).default(300),
  RATE_LIMIT_PER_MINUTE: z.coerce.number().int().min(1).default(1200),
  CORS_ORIGINS: z.string().optional(),
  HIE_SIGNING_KEY: z.string().optional(),
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
