import { DEFAULT_RESOURCE_COST, ResourceCostLimits } from '../common/resource-cost';
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

/** 32 random bytes (AES-256 key), base64 or base64url, e.g. `openssl rand -base64 32`. */
const keyEncryptionKey = z
  .string()
  .refine(
    (value) => /^[A-Za-z0-9+/_-]{43}=?$/.test(value.trim()) && Buffer.from(value.trim(), 'base64').length === 32,
    'must be 32 random bytes in base64 (openssl rand -base64 32)',
  );

const envSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  PORT: port(8080),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL')
    .optional(),
  DATABASE_MIGRATION_URL: z
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
  /** Largest raw Binary body (`POST /Binary` with a non-FHIR Content-Type); stored base64, 4/3 the size. */
  BINARY_LIMIT: z
    .string()
    .regex(/^\d+(b|kb|mb|gb)?$/i, 'must be a size such as 10mb')
    .default('10mb'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  DB_POOL_SIZE: integer(1, 500, 20),
  /** 0 turns the limit off. */
  DB_STATEMENT_TIMEOUT_MS: integer(0, 86_400_000, 30_000, 'a number of milliseconds'),
  ACCESS_TOKEN_TTL_SECONDS: integer(30, 3600, 300, 'a number of seconds'),
  RATE_LIMIT_PER_MINUTE: integer(1, 1_000_000, 1200),
  RATE_LIMIT_TOKEN_FAILURES_PER_ADDRESS: integer(1, 1_000_000, 100),
  RATE_LIMIT_TOKEN_FAILURES_PER_CLAIMED_ID: integer(1, 1_000_000, 20),
  CORS_ORIGINS: z.string().optional(),
  TRUST_PROXY: z
    .string()
    .regex(/^(true|false|\d{1,2}|[A-Za-z0-9.:/]+(\s*,\s*[A-Za-z0-9.:/]+)*)$/, 'must be true, false, a hop count, or comma-separated proxy addresses/subnets (loopback, 10.0.0.0/8)')
    .optional(),
  HIE_SIGNING_KEY: signingKey.optional(),
  HIE_KEY_ENCRYPTION_KEY: keyEncryptionKey.optional(),
  HIE_BOOTSTRAP_ADMIN_CLIENT_ID: z.string().regex(/^[A-Za-z0-9\-_.]{3,64}$/, 'must be 3-64 of [A-Za-z0-9-_.]').optional(),
  HIE_BOOTSTRAP_ADMIN_SECRET: z.string().min(24, 'must be at least 24 characters').optional(),
  /** Conditional delete of several matches (R4 allows single or multiple); 0 = single only (412 on several). */
  FHIR_CONDITIONAL_DELETE_MAX: integer(0, 1000, 0, 'a number of resources'),
  /** Reruns of a write interaction PostgreSQL rolled back for a deadlock or serialization failure, before 503 transient. */
  FHIR_WRITE_CONFLICT_RETRIES: integer(0, 10, 3, 'a number of retries'),
  /** A PostgreSQL text search configuration (psql `\dF`) for `_text` / `_content`; a change needs `npm run reindex`. */
  SEARCH_TEXT_LANGUAGE: z.string().regex(/^[a-z][a-z0-9_]{0,62}$/, 'must be a PostgreSQL text search configuration name such as simple or english').default('simple'),
  /** The cost of one resource (each Bundle entry's on its own), checked before it is validated or indexed. */
  FHIR_MAX_ARRAY_LENGTH: integer(100, 1_000_000, DEFAULT_RESOURCE_COST.maxArrayLength, 'a number of elements'),
  FHIR_MAX_RESOURCE_ELEMENTS: integer(1_000, 10_000_000, DEFAULT_RESOURCE_COST.maxElements, 'a number of elements'),
  FHIR_MAX_INDEX_ROWS: integer(100, 10_000_000, DEFAULT_RESOURCE_COST.maxIndexRows, 'a number of rows'),
  /** `off` only for benchmarks (audit on vs off) and tests: records are then only logged, not stored. */
  AUDIT_STORE: z.enum(['on', 'off']).default('on'),
  /** Set by `bench/` (bench-env.ts): this process is a benchmark, the one place AUDIT_STORE=off is allowed besides tests. */
  HIE_BENCHMARK: z.enum(['true', 'false'], { error: 'must be true or false' }).default('false'),
  /**
   * Group commit: how long an idle audit writer waits to gather records of concurrent requests.
   * 0: none (a batch starts at once; records arriving while it commits form the next).
   */
  AUDIT_GROUP_COMMIT_WAIT_MS: integer(0, 50, 0, 'a number of milliseconds'),
  /**
   * `relaxed`: the records of successful reads and searches commit without waiting for their WAL
   * flush (PostgreSQL's `synchronous_commit = off` for those commits alone): a PostgreSQL or OS
   * crash can lose the last few hundred ms of them, an app crash none. Not the default.
   */
  AUDIT_READ_COMMIT: z.enum(['durable', 'relaxed']).default('durable'),
  /** Group commit: most records in one INSERT and commit. */
  AUDIT_GROUP_COMMIT_MAX: integer(1, 5000, 500, 'a number of records'),
  /** `off`: this node enqueues jobs but runs none (e.g. API-only nodes beside worker nodes). */
  JOBS_WORKERS: z.enum(['on', 'off']).default('on'),
  /** Connections of the job queue's own pool (workers, maintenance, LISTEN). */
  JOBS_POOL_SIZE: integer(2, 50, 3, 'a number of connections'),
  /** How often an idle worker looks for jobs when no NOTIFY woke it (pg-boss minimum 0.5). */
  JOBS_POLL_SECONDS: z.coerce.number().min(0.5, 'must be at least 0.5').max(60, 'must be at most 60').default(2),
  /** How often a node looks for jobs whose worker died (active past their expiry) to retry them. */
  JOBS_SUPERVISE_SECONDS: integer(1, 3600, 30, 'a number of seconds'),
  /** `off`: Patient writes keep the demographics index but enqueue no matching job (bulk loads; `npm test` unless a file opts in). */
  IDENTITY_MATCH_ON_WRITE: z.enum(['on', 'off']).default('on'),
  /** Days a completed or failed referral keeps its referral-scoped access (docs/referrals.md). */
  REFERRAL_ACCESS_DAYS: integer(0, 3650, 30, 'a number of days'),
  /** Bulk Data `$export` (docs/public-health.md): where the NDJSON files are written. */
  EXPORT_DIR: z.string().min(1).default('./data/exports'),
  /** Disk quota of every export's files together, in MiB; an export that would exceed it fails. */
  EXPORT_QUOTA_MB: integer(1, 10_000_000, 10_240, 'a number of MiB'),
  /** Hours a completed export's files stay downloadable before they are deleted. */
  EXPORT_EXPIRE_HOURS: integer(1, 720, 24, 'a number of hours'),
  /** Exports one client may have accepted or running at once (more: 429). */
  EXPORT_MAX_PER_CLIENT: integer(1, 100, 2, 'a number of exports'),
  /**
   * De-identified exports keep the first three postal digits only for these prefixes (comma-separated;
   * Safe Harbor: each must cover more than 20,000 people, per the current census). Empty: state only.
   */
  EXPORT_DEID_ZIP3_ALLOWED: z
    .string()
    .regex(/^(\d{3}(\s*,\s*\d{3})*)?$/, 'must be comma-separated three-digit postal prefixes')
    .default(''),
  /** Resources per search page of the export job (the memory bound per type). */
  EXPORT_PAGE_SIZE: integer(10, 1000, 1000, 'a number of resources'),
  /** `$evaluate-measure` (docs/public-health.md): `true` counts only patients whose consent admits PUBHLTH. */
  STATISTICS_RESPECT_OPT_OUT: z.enum(['true', 'false'], { error: 'must be true or false' }).default('false'),
  /** Small-cell threshold: counts 1..threshold-1 are withheld (never below 5). */
  STATISTICS_SUPPRESSION_THRESHOLD: integer(5, 1000, 11, 'a count'),
  /** The `region` stratifier: the home address's district, state, or the first STATISTICS_POSTAL_PREFIX_DIGITS of its postal code. */
  STATISTICS_REGION: z.enum(['district', 'state', 'postal-prefix']).default('district'),
  STATISTICS_POSTAL_PREFIX_DIGITS: integer(1, 5, 3, 'a number of digits'),
  /** Lower bounds (years) of the `age-band` stratifier's bands, ascending, starting at 0. */
  STATISTICS_AGE_BANDS: z
    .string()
    .regex(/^0(\s*,\s*\d{1,3})*$/, 'must be ascending comma-separated ages in years starting at 0')
    .refine((v) => v.split(',').map(Number).every((n, i, a) => i === 0 || n > a[i - 1]), 'must be ascending')
    .default('0,5,18,45,65'),
})
  .refine((env) => !env.DATABASE_MIGRATION_URL || env.DATABASE_URL, {
    path: ['DATABASE_MIGRATION_URL'],
    message: 'needs DATABASE_URL (the embedded PostgreSQL has its own migration role)',
  })
  // A server that stores no audit trail records no access at all: never by a stray variable in production.
  .refine((env) => env.AUDIT_STORE === 'on' || env.NODE_ENV === 'test' || env.HIE_BENCHMARK === 'true', {
    path: ['AUDIT_STORE'],
    message: 'may be off only in tests (NODE_ENV=test) or benchmarks (HIE_BENCHMARK=true); without the store no access is recorded',
  });

export type Env = z.infer<typeof envSchema>;

export interface AppConfig {
  nodeEnv: Env['NODE_ENV'];
  port: number;
  /** The app's runtime connection (a least-privileged role when DATABASE_MIGRATION_URL is set). */
  databaseUrl?: string;
  /** The schema owner's connection, used only to apply migrations; unset: migrations use databaseUrl. */
  databaseMigrationUrl?: string;
  embeddedPgDir: string;
  embeddedPgPort: number;
  publicBaseUrl: string;
  fhirBasePath: string;
  /** Absolute base URL of the FHIR endpoint, used in Location, fullUrl and paging links. */
  fhirBaseUrl: string;
  bodyLimit: string;
  /** Largest raw Binary upload (BINARY_LIMIT). */
  binaryLimit: string;
  logLevel: Env['LOG_LEVEL'];
  dbPoolSize: number;
  /** Longest a single SQL statement of the server may run (PostgreSQL statement_timeout); 0: no limit. */
  dbStatementTimeoutMs: number;
  accessTokenTtlSeconds: number;
  rateLimitPerMinute: number;
  /** Failed token requests per minute from one source address, and per (address, claimed client id). */
  tokenFailuresPerAddress: number;
  tokenFailuresPerClaimedId: number;
  /**
   * Express `trust proxy`: which proxies' X-Forwarded-For is believed, so rate limits before
   * authentication see the client's address, not the load balancer's. Off by default.
   */
  trustProxy: boolean | number | string;
  /** Allowed CORS origins; empty means CORS is off. */
  corsOrigins: string[];
  /** A private JWK (JSON) to sign access tokens with, instead of a generated key kept in the database. */
  signingKey?: string;
  /** AES-256-GCM key (base64) that encrypts the stored signing keys and the client-secret HMAC key. */
  keyEncryptionKey?: string;
  bootstrapAdmin?: { clientId: string; secret: string };
  /** Token endpoint URL (the `aud` of client assertions). */
  tokenUrl: string;
  /** Most matches one conditional delete may delete; 0: single-match only (several answer 412). */
  conditionalDeleteMax: number;
  /** Reruns of a whole write interaction (a transaction Bundle, a batch entry) after a deadlock or serialization failure; then 503 transient. */
  writeConflictRetries: number;
  /** Text search configuration of `_text` / `_content` (index rows and queries alike). */
  searchTextLanguage: string;
  /** Limits on one resource (docs/security.md): past one, the write is refused `too-costly`. */
  resourceCost: ResourceCostLimits;
  /** Stored audit trail (docs/audit.md); off only for benchmarks. */
  audit: { store: boolean; groupCommitWaitMs: number; groupCommitMax: number; relaxedReadCommit: boolean };
  /** The outbox job queue (src/jobs/). */
  jobs: { workers: boolean; poolSize: number; pollSeconds: number; superviseSeconds: number };
  /** Days a completed or failed referral keeps its referral-scoped access (src/referrals/). */
  referralAccessDays: number;
  /** Whether a Patient write enqueues its identity matching job (docs/identity.md). */
  identityMatchOnWrite: boolean;
  /** Bulk Data `$export` (src/public-health/bulk-export*.ts). */
  bulkExport: { dir: string; quotaBytes: number; expireHours: number; maxPerClient: number; pageSize: number; zip3Allowed: string[] };
  /** Coverage statistics, `$evaluate-measure` (src/public-health/measure-*.ts). */
  statistics: { respectOptOut: boolean; threshold: number; region: 'district' | 'state' | 'postal-prefix'; postalPrefixDigits: number; ageBands: number[] };
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
    databaseMigrationUrl: e.DATABASE_MIGRATION_URL,
    embeddedPgDir: e.EMBEDDED_PG_DIR,
    embeddedPgPort: e.EMBEDDED_PG_PORT,
    publicBaseUrl,
    fhirBasePath: e.FHIR_BASE_PATH,
    fhirBaseUrl: publicBaseUrl + e.FHIR_BASE_PATH,
    bodyLimit: e.BODY_LIMIT,
    binaryLimit: e.BINARY_LIMIT,
    logLevel: e.LOG_LEVEL,
    dbPoolSize: e.DB_POOL_SIZE,
    dbStatementTimeoutMs: e.DB_STATEMENT_TIMEOUT_MS,
    accessTokenTtlSeconds: e.ACCESS_TOKEN_TTL_SECONDS,
    rateLimitPerMinute: e.RATE_LIMIT_PER_MINUTE,
    tokenFailuresPerAddress: e.RATE_LIMIT_TOKEN_FAILURES_PER_ADDRESS,
    tokenFailuresPerClaimedId: e.RATE_LIMIT_TOKEN_FAILURES_PER_CLAIMED_ID,
    trustProxy: e.TRUST_PROXY === undefined || e.TRUST_PROXY === 'false' ? false : e.TRUST_PROXY === 'true' ? true : /^\d+$/.test(e.TRUST_PROXY) ? Number(e.TRUST_PROXY) : e.TRUST_PROXY,
    corsOrigins: (e.CORS_ORIGINS ?? '').split(',').map((o) => o.trim()).filter(Boolean),
    signingKey: e.HIE_SIGNING_KEY,
    keyEncryptionKey: e.HIE_KEY_ENCRYPTION_KEY?.trim(),
    bootstrapAdmin:
      e.HIE_BOOTSTRAP_ADMIN_CLIENT_ID && e.HIE_BOOTSTRAP_ADMIN_SECRET
        ? { clientId: e.HIE_BOOTSTRAP_ADMIN_CLIENT_ID, secret: e.HIE_BOOTSTRAP_ADMIN_SECRET }
        : undefined,
    audit: { store: e.AUDIT_STORE === 'on', groupCommitWaitMs: e.AUDIT_GROUP_COMMIT_WAIT_MS, groupCommitMax: e.AUDIT_GROUP_COMMIT_MAX, relaxedReadCommit: e.AUDIT_READ_COMMIT === 'relaxed' },
    jobs: { workers: e.JOBS_WORKERS === 'on', poolSize: e.JOBS_POOL_SIZE, pollSeconds: e.JOBS_POLL_SECONDS, superviseSeconds: e.JOBS_SUPERVISE_SECONDS },
    referralAccessDays: e.REFERRAL_ACCESS_DAYS,
    identityMatchOnWrite: e.IDENTITY_MATCH_ON_WRITE === 'on',
    bulkExport: {
      dir: e.EXPORT_DIR,
      quotaBytes: e.EXPORT_QUOTA_MB * 1024 * 1024,
      expireHours: e.EXPORT_EXPIRE_HOURS,
      maxPerClient: e.EXPORT_MAX_PER_CLIENT,
      pageSize: e.EXPORT_PAGE_SIZE,
      zip3Allowed: e.EXPORT_DEID_ZIP3_ALLOWED.split(',').map((z) => z.trim()).filter(Boolean),
    },
    statistics: {
      respectOptOut: e.STATISTICS_RESPECT_OPT_OUT === 'true',
      threshold: e.STATISTICS_SUPPRESSION_THRESHOLD,
      region: e.STATISTICS_REGION,
      postalPrefixDigits: e.STATISTICS_POSTAL_PREFIX_DIGITS,
      ageBands: e.STATISTICS_AGE_BANDS.split(',').map(Number),
    },
    tokenUrl: `${publicBaseUrl}/oauth2/token`,
    conditionalDeleteMax: e.FHIR_CONDITIONAL_DELETE_MAX,
    writeConflictRetries: e.FHIR_WRITE_CONFLICT_RETRIES,
    searchTextLanguage: e.SEARCH_TEXT_LANGUAGE,
    resourceCost: { maxArrayLength: e.FHIR_MAX_ARRAY_LENGTH, maxElements: e.FHIR_MAX_RESOURCE_ELEMENTS, maxIndexRows: e.FHIR_MAX_INDEX_ROWS },
  };
}

export const APP_CONFIG = Symbol('APP_CONFIG');
