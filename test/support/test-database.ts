import { randomBytes } from 'node:crypto';
import { Client } from 'pg';

/** Set by test/global-setup.ts for the test workers: the server and the migrated template database. */
export const TEST_DB_ENV = { adminUrl: 'HIE_TEST_ADMIN_URL', template: 'HIE_TEST_TEMPLATE_DB' } as const;

const OBJECT_IN_USE = '55006';

/**
 * A new database copied from this run's migrated template (`CREATE DATABASE … TEMPLATE`, a file
 * copy: no migrations run), named after the template so the global teardown finds it. Every e2e
 * test file gets one before it loads (file-database.setup.ts); call this for one more (a second
 * app, a child process that must not share the file's data). `empty` gives a database without the
 * schema (for testing migrations themselves).
 */
export async function createTestDatabase(opts: { empty?: boolean } = {}): Promise<string> {
  const adminUrl = process.env[TEST_DB_ENV.adminUrl];
  const template = process.env[TEST_DB_ENV.template];
  if (!adminUrl || !template) throw new Error('no test database server: e2e tests run through jest, whose global setup starts one');
  const name = `${template.replace(/_template$/, '')}_${randomBytes(5).toString('hex')}`;
  const admin = new Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        await admin.query(opts.empty ? `CREATE DATABASE ${name}` : `CREATE DATABASE ${name} TEMPLATE ${template}`);
        break;
      } catch (err) {
        // Only if something connected to the template (it must stay unused): retry briefly, then say so.
        if ((err as { code?: string }).code !== OBJECT_IN_USE || attempt >= 20) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}
