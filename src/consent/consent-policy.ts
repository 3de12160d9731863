import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ConfigurationError } from '../config/app.config';

// src/consent and dist/consent are both two levels below the project root.
const PROJECT_ROOT = resolve(__dirname, '..', '..');
const PURPOSE_RE = /^[A-Z]{2,16}$/;
const LABEL_RE = /^[^|\s]+\|[^|\s]+$/;

/** The region's base consent policy (config/consent-policy.json; docs/consent.md). */
export interface ConsentPolicy {
  /** opt-out: other organizations' data is shared for `sharedPurposes` unless a Consent denies it; opt-in: only what a Consent permits. */
  basePolicy: 'opt-out' | 'opt-in';
  sharedPurposes: readonly string[];
  /** `system|code` labels that need an explicit permit naming them, whatever the base policy. */
  sensitiveLabels: readonly string[];
  /** Break-the-glass (ETREAT with a reason) also opens sensitive data. */
  breakGlassOverridesSensitive: boolean;
}

export const CONSENT_POLICY = Symbol('CONSENT_POLICY');

/** Reads and checks the policy file; `CONSENT_BASE_POLICY` overrides its basePolicy. A bad file stops the start. */
export function loadConsentPolicy(env: NodeJS.ProcessEnv = process.env, file = join(PROJECT_ROOT, 'config', 'consent-policy.json')): ConsentPolicy {
  const raw = JSON.parse(readFileSync(file, 'utf8')) as Partial<ConsentPolicy>;
  const basePolicy = env.CONSENT_BASE_POLICY ?? raw.basePolicy;
  if (basePolicy !== 'opt-out' && basePolicy !== 'opt-in') {
    throw new ConfigurationError(`Invalid consent policy: basePolicy (or CONSENT_BASE_POLICY) must be opt-out or opt-in`);
  }
  const list = (name: keyof ConsentPolicy, re: RegExp): string[] => {
    const v = raw[name];
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string' && re.test(x))) throw new ConfigurationError(`Invalid consent policy: ${name} must be a list of codes`);
    return v as string[];
  };
  if (raw.breakGlassOverridesSensitive !== undefined && typeof raw.breakGlassOverridesSensitive !== 'boolean') {
    throw new ConfigurationError('Invalid consent policy: breakGlassOverridesSensitive must be true or false');
  }
  return {
    basePolicy,
    sharedPurposes: list('sharedPurposes', PURPOSE_RE),
    sensitiveLabels: list('sensitiveLabels', LABEL_RE),
    breakGlassOverridesSensitive: raw.breakGlassOverridesSensitive ?? false,
  };
}
