import { Linter } from 'eslint';

// The project's real ESLint configuration (the one `npm run lint` uses).
const config = require('../../eslint.config.js') as Linter.Config[];

/** Lints `code` as if it were the file at `path` (relative to the project root). */
function lint(path: string, code: string): string[] {
  const linter = new Linter({ configType: 'flat', cwd: process.cwd() });
  return linter.verify(code, config, { filename: `${process.cwd()}/${path}` }).map((m) => `${m.line}:${m.ruleId}`);
}

const INJECTS_DATASOURCE = `
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
export class Sneaky {
  constructor(@InjectDataSource() private readonly db: DataSource) {}
}
`;
const RUNS_RESOURCE_SQL = `
export function sneaky(tx: { query(sql: string, p: unknown[]): unknown }, id: string) {
  return tx.query(\`SELECT content FROM resource WHERE id = $1\`, [id]);
}
export const wipe = 'DELETE FROM search_token';
export const history = 'select * from resource_history h join resource r on true';
`;

/** The architecture rules (docs/architecture.md): only storage and search reach the resource tables. */
describe('architecture lint rules', () => {
  it('refuses a DataSource injection anywhere under src/fhir outside storage and search', () => {
    expect(lint('src/fhir/rest/sneaky.ts', INJECTS_DATASOURCE)).toEqual(['2:no-restricted-imports', '3:no-restricted-imports']);
    expect(lint('src/fhir/pipeline/sneaky.ts', INJECTS_DATASOURCE)).toEqual(['2:no-restricted-imports', '3:no-restricted-imports']);
    expect(lint('src/fhir/operations/sneaky.ts', INJECTS_DATASOURCE)).toEqual(['2:no-restricted-imports', '3:no-restricted-imports']);
  });

  it('allows it in storage and search, and other modules for their own tables', () => {
    expect(lint('src/fhir/storage/ok.ts', INJECTS_DATASOURCE)).toEqual([]);
    expect(lint('src/fhir/search/ok.ts', INJECTS_DATASOURCE)).toEqual([]);
    expect(lint('src/auth/ok.ts', INJECTS_DATASOURCE)).toEqual([]);
  });

  it('refuses SQL on the resource, history and index tables outside storage and search', () => {
    expect(lint('src/fhir/transaction/sneaky.ts', RUNS_RESOURCE_SQL)).toEqual(['3:no-restricted-syntax', '5:no-restricted-syntax', '6:no-restricted-syntax']);
    expect(lint('src/audit/sneaky.ts', RUNS_RESOURCE_SQL)).toEqual(['3:no-restricted-syntax', '5:no-restricted-syntax', '6:no-restricted-syntax']);
    expect(lint('src/fhir/storage/ok.ts', RUNS_RESOURCE_SQL)).toEqual([]);
    expect(lint('src/auth/ok.ts', 'export const q = "SELECT * FROM oauth_client WHERE resource_type = 1";')).toEqual([]);
  });
});
