import { decodeProtectedHeader } from 'jose';
import request from 'supertest';
import { runCli } from '../../src/cli/cli';
import { createTestApp, TestApp } from '../support/test-app';

/** `npm run cli -- …` against the same database the server uses (here: the test database). */
async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runCli(argv, { out: (s) => (out += s), err: (s) => (err += s) });
  return { code, out, err };
}

describe('administration CLI and signing-key rotation', () => {
  let t: TestApp;
  const id = `cli-hospital-${Date.now().toString(36)}`;
  const token = (secret: string, scope = 'system/*.rs') =>
    request(t.http).post('/oauth2/token').auth(id, secret).type('form').send({ grant_type: 'client_credentials', scope });

  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t.close());

  it('client add prints only the new secret on stdout, and that secret gets a token', async () => {
    const added = await cli('client', 'add', '--id', id, '--role', 'hospital', '--org', 'org-cli', '--scopes', 'system/*.cruds', '--purposes', 'TREAT');
    expect(added.code).toBe(0);
    expect(added.out).toMatch(/^[A-Za-z0-9_-]{43}\n$/);
    expect(added.err).toContain(`registered ${id} (hospital, organization org-cli)`);
    const res = await token(added.out.trim());
    expect(res.status).toBe(200);
    expect(res.body.scope).toBe('system/*.rs');
    const search = await request(t.http).get('/fhir/Patient?_count=1').set('Authorization', `Bearer ${res.body.access_token}`);
    expect(search.status).toBe(200);
    expect(search.body.resourceType).toBe('Bundle');
  });

  it('refuses a bad registration with the field named, and a duplicate id', async () => {
    // The CLI's entry point prints the message as `error: …` and exits 1.
    await expect(cli('client', 'add', '--id', `${id}-bad`, '--role', 'king', '--org', 'org-cli', '--scopes', 'system/*.rs', '--purposes', 'TREAT')).rejects.toThrow(
      /^role: must be one of hospital, public-health, auditor, admin$/,
    );
    expect((await cli('client', 'list')).out).not.toContain(`${id}-bad`);
    await expect(cli('client', 'add', '--id', id, '--role', 'hospital', '--org', 'org-cli', '--scopes', 'system/*.rs', '--purposes', 'TREAT')).rejects.toThrow(
      /already exists/,
    );
  });

  it('lists, rotates the secret, disables and enables', async () => {
    const listed = await cli('client', 'list');
    expect(listed.out.split('\n').find((l) => l.startsWith(`${id}\t`))).toBe(`${id}\thospital\torg-cli\tenabled\tsystem/*.cruds\tTREAT`);
    const rotated = await cli('client', 'rotate-secret', id);
    const secret = rotated.out.trim();
    expect((await token(secret)).status).toBe(200);
    expect((await cli('client', 'disable', id)).code).toBe(0);
    const refused = await token(secret);
    expect(refused.status).toBe(401);
    expect(refused.body.error).toBe('invalid_client');
    expect((await cli('client', 'enable', id)).code).toBe(0);
    expect((await token(secret)).status).toBe(200);
  });

  it('key rotate: new tokens use the new key, tokens in flight stay valid, both keys are published', async () => {
    const secret = (await cli('client', 'rotate-secret', id)).out.trim();
    const before = (await token(secret)).body.access_token as string;
    const oldKid = decodeProtectedHeader(before).kid;
    const rotated = await cli('key', 'rotate');
    expect(rotated.code).toBe(0);
    const after = (await token(secret)).body.access_token as string;
    const newKid = decodeProtectedHeader(after).kid;
    expect(newKid).not.toBe(oldKid);
    expect(rotated.err).toContain(`new signing key ${newKid}`);
    const kids = (await request(t.http).get('/.well-known/jwks.json')).body.keys.map((k: { kid: string }) => k.kid);
    expect(kids).toEqual(expect.arrayContaining([oldKid, newKid]));
    for (const bearer of [before, after]) {
      expect((await request(t.http).get('/fhir/Patient?_count=1').set('Authorization', `Bearer ${bearer}`)).status).toBe(200);
    }
  });
});
