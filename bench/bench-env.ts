/**
 * Imported first by bench-support: settings that modules read when they are loaded (the access
 * log level is fixed when AppModule is defined) must be in place before AppModule is imported.
 */
process.env.LOG_LEVEL ??= 'warn';
process.env.RATE_LIMIT_PER_MINUTE ??= '1000000';
process.env.ACCESS_TOKEN_TTL_SECONDS ??= '3600';
// AUDIT_STORE=off (the audit on/off A/B) is refused outside tests and benchmarks (src/config/app.config.ts).
process.env.HIE_BENCHMARK ??= 'true';
