import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigurationError } from '../config/app.config';
import { loadIdentityConfig } from './identity-config';

function file(content: unknown): string {
  const f = join(mkdtempSync(join(tmpdir(), 'identity-config-')), 'identity.json');
  writeFileSync(f, JSON.stringify(content));
  return f;
}

const GOOD = { trustedIdentifierSystems: ['urn:ssn'], thresholds: { upper: 24, lower: 14, possible: 8 }, exchangeOrganization: 'hie-exchange' };

describe('identity config', () => {
  it('loads the shipped file', () => {
    const c = loadIdentityConfig();
    expect(c.thresholds).toEqual({ upper: 24, lower: 14, possible: 8 });
    expect(c.exchangeOrganization).toBe('hie-exchange');
    expect(c.trustedIdentifierSystems).toContain('http://hl7.org/fhir/sid/us-ssn');
  });

  it.each([
    ['thresholds out of order', { ...GOOD, thresholds: { upper: 10, lower: 14, possible: 8 } }, /upper > lower > possible/],
    ['a threshold that is not a number', { ...GOOD, thresholds: { upper: '24', lower: 14, possible: 8 } }, /thresholds/],
    ['trusted systems not a list', { ...GOOD, trustedIdentifierSystems: 'urn:ssn' }, /trustedIdentifierSystems/],
    ['an exchange organization that is not an id', { ...GOOD, exchangeOrganization: 'Organization/x y' }, /exchangeOrganization/],
  ])('refuses %s', (_name, content, message) => {
    expect(() => loadIdentityConfig(file(content))).toThrow(ConfigurationError);
    expect(() => loadIdentityConfig(file(content))).toThrow(message);
  });
});
