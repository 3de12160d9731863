import 'reflect-metadata';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Logger } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { validateRegistration } from '../auth/client-registration.input';
import { ClientRegistrationRepository } from '../auth/client-registration.repository';
import { ClientSecretHasher } from '../auth/client-secret.hasher';
import { KeyEncryption } from '../auth/key-encryption';
import { SigningKeyStore } from '../auth/signing-key.store';
import { loadAppConfig } from '../config/app.config';
import { runtimeDataSourceOptions, stopEmbeddedDatabase } from '../database/database.module';
import { FhirError } from '../common/fhir-error';

const USAGE = `Usage: npm run cli -- <command>

  client add --id ID --role hospital|public-health|auditor|admin --org ORGANIZATION_ID
             --scopes "system/*.cruds ..." --purposes "TREAT ..." [--name NAME]
             [--jwks FILE_OR_JSON] [--secret] [--clinical-access]
        Registers a client. Without --jwks (or with --secret) a client secret is generated and
        printed once.
  client list
  client disable ID | client enable ID
  client rotate-secret ID
  key rotate           New token-signing key; tokens signed by the old one stay valid until they expire.

Works with the server stopped: it uses DATABASE_URL, or the embedded PostgreSQL under ./data/.
A new client secret is the only thing written to stdout (SECRET=$(npm run -s cli -- client add …));
everything else goes to stderr.`;

export interface CliOutput {
  /** Machine-readable result: a client secret, or the client list. */
  out(text: string): void;
  /** Messages for the person at the terminal. */
  err(text: string): void;
}

/** Administration from the shell, for the first admin and for operators. Talks to the database directly. */
export async function runCli(argv: string[], io: CliOutput): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      id: { type: 'string' },
      role: { type: 'string' },
      org: { type: 'string' },
      name: { type: 'string' },
      scopes: { type: 'string' },
      purposes: { type: 'string' },
      jwks: { type: 'string' },
      secret: { type: 'boolean' },
      'clinical-access': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [group, command, target] = positionals;
  if (values.help || !group) {
    (values.help ? io.out : io.err)(`${USAGE}\n`);
    return values.help ? 0 : 2;
  }
  const config = loadAppConfig();
  const ds = new DataSource(await runtimeDataSourceOptions(config, 2));
  await ds.initialize();
  try {
    const encryption = new KeyEncryption(config);
    const clients = new ClientRegistrationRepository(ds, new ClientSecretHasher(ds, encryption));
    if (group === 'client' && command === 'add') {
      const jwks = values.jwks ? JSON.parse(values.jwks.trim().startsWith('{') ? values.jwks : readFileSync(values.jwks, 'utf8')) : undefined;
      const input = validateRegistration({
        clientId: values.id,
        name: values.name,
        organization: values.org,
        role: values.role,
        scopes: values.scopes?.split(/[\s,]+/).filter(Boolean),
        purposes: values.purposes?.split(/[\s,]+/).filter(Boolean),
        jwks,
        secret: values.secret === true,
        clinicalAccess: values['clinical-access'] === true,
      });
      const { client, secret } = await clients.create(input);
      io.err(`registered ${client.clientId} (${client.role}, organization ${client.organization})\n`);
      if (secret) {
        io.err('client secret (shown once, on stdout):\n');
        io.out(`${secret}\n`);
      }
      return 0;
    }
    if (group === 'client' && command === 'list') {
      for (const c of await clients.list()) {
        io.out(`${c.clientId}\t${c.role}\t${c.organization}\t${c.disabled ? 'disabled' : 'enabled'}\t${c.scopes.join(' ')}\t${c.purposes.join(' ')}\n`);
      }
      return 0;
    }
    if (group === 'client' && (command === 'disable' || command === 'enable') && target) {
      if (!(await clients.setDisabled(target, command === 'disable'))) throw new Error(`no client ${target}`);
      io.err(`${target} ${command}d\n`);
      return 0;
    }
    if (group === 'client' && command === 'rotate-secret' && target) {
      const secret = await clients.rotateSecret(target);
      if (!secret) throw new Error(`no client ${target}`);
      io.err(`new client secret for ${target} (shown once, on stdout):\n`);
      io.out(`${secret}\n`);
      return 0;
    }
    if (group === 'key' && command === 'rotate') {
      io.err(`new signing key ${await new SigningKeyStore(ds, config, encryption).rotate()}\n`);
      return 0;
    }
    io.err(`${USAGE}\n`);
    return 2;
  } finally {
    await ds.destroy();
  }
}

if (require.main === module) {
  // Library log lines (which database it uses) go to stderr, so stdout carries only results.
  const toStderr = (message: unknown, context?: unknown) => process.stderr.write(`[${String(context ?? 'cli')}] ${String(message)}\n`);
  Logger.overrideLogger({ log: toStderr, warn: toStderr, error: toStderr });
  const io: CliOutput = { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t) };
  runCli(process.argv.slice(2), io)
    .then(async (code) => {
      await stopEmbeddedDatabase();
      process.exit(code);
    })
    .catch(async (err: unknown) => {
      const message = err instanceof FhirError ? err.message : err instanceof Error ? err.message : String(err);
      process.stderr.write(`error: ${message}\n`);
      await stopEmbeddedDatabase().catch(() => undefined);
      process.exit(1);
    });
}
