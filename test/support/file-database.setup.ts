import { createTestDatabase } from './test-database';

// jest `setupFiles` of the e2e project: before a test file loads, point DATABASE_URL (of this file's
// sandbox only) at a database of its own, copied from the migrated template. Files cannot see each
// other's rows, so they run in parallel; createTestApp() and the CLI pick it up unchanged.
export = async function fileDatabase(): Promise<void> {
  process.env.DATABASE_URL = await createTestDatabase();
  // Identity matching after each Patient write runs in the background and audits itself: it would
  // add records to files that assert the exact audit trail. The identity files turn it on.
  process.env.IDENTITY_MATCH_ON_WRITE ??= 'off';
};
