import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ConfigurationError } from '../config/app.config';

// src/identity and dist/identity are both two levels below the project root.
const PROJECT_ROOT = resolve(__dirname, '..', '..');

/** Identity matching's settings (config/identity.json; docs/identity.md). */
export interface IdentityConfig {
  /** Identifier systems that name one person region-wide: the deterministic rule. */
  trustedIdentifierSystems: readonly string[];
  /** Total weights (log2 units): certain at or above `upper`, probable at or above `lower`, possible at or above `possible`. */
  thresholds: { upper: number; lower: number; possible: number };
  /** The Organization id the exchange's own resources (Person) name as custodian. */
  exchangeOrganization: string;
}

export const IDENTITY_CONFIG = Symbol('IDENTITY_CONFIG');

/** Reads and checks config/identity.json; a bad file stops the start. */
export function loadIdentityConfig(file = join(PROJECT_ROOT, 'config', 'identity.json')): IdentityConfig {
  const raw = JSON.parse(readFileSync(file, 'utf8')) as Partial<IdentityConfig>;
  const systems = raw.trustedIdentifierSystems;
  if (!Array.isArray(systems) || !systems.every((s) => typeof s === 'string' && s.length > 0)) {
    throw new ConfigurationError('Invalid identity config: trustedIdentifierSystems must be a list of identifier system URIs');
  }
  const t = raw.thresholds;
  const num = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
  if (!t || !num(t.upper) || !num(t.lower) || !num(t.possible) || !(t.upper > t.lower && t.lower > t.possible)) {
    throw new ConfigurationError('Invalid identity config: thresholds needs numbers upper > lower > possible');
  }
  if (typeof raw.exchangeOrganization !== 'string' || !/^[A-Za-z0-9\-.]{1,64}$/.test(raw.exchangeOrganization)) {
    throw new ConfigurationError('Invalid identity config: exchangeOrganization must be an Organization id');
  }
  return { trustedIdentifierSystems: systems, thresholds: { upper: t.upper, lower: t.lower, possible: t.possible }, exchangeOrganization: raw.exchangeOrganization };
}
