import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
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
  it('refuses a DataSource injection under src/fhir outside storage and search, in the orchestration, the controllers and the exchange modules', () => {
    expect(lint('src/rest/sneaky.ts', INJECTS_DATASOURCE)).toEqual(['2:no-restricted-imports', '3:no-restricted-imports']);
    expect(lint('src/pipeline/sneaky.ts', INJECTS_DATASOURCE)).toEqual(['2:no-restricted-imports', '3:no-restricted-imports']);
    expect(lint('src/referrals/sneaky.ts', INJECTS_DATASOURCE)).toEqual(['2:no-restricted-imports', '3:no-restricted-imports']);
    expect(lint('src/identity/sneaky.job.ts', INJECTS_DATASOURCE)).toEqual(['2:no-restricted-imports', '3:no-restricted-imports']);
    expect(lint('src/fhir/pipeline/sneaky.ts', INJECTS_DATASOURCE)).toEqual(['2:no-restricted-imports', '3:no-restricted-imports']);
    expect(lint('src/fhir/operations/sneaky.ts', INJECTS_DATASOURCE)).toEqual(['2:no-restricted-imports', '3:no-restricted-imports']);
  });

  it('allows it in storage and search, in the policy modules and in an exchange module’s repository for its own tables', () => {
    expect(lint('src/fhir/storage/ok.ts', INJECTS_DATASOURCE)).toEqual([]);
    expect(lint('src/public-health/bulk-export.repository.ts', INJECTS_DATASOURCE)).toEqual([]);
    expect(lint('src/fhir/search/ok.ts', INJECTS_DATASOURCE)).toEqual([]);
    expect(lint('src/auth/ok.ts', INJECTS_DATASOURCE)).toEqual([]);
  });

  it('refuses SQL on the resource, history and index tables outside storage and search', () => {
    expect(lint('src/pipeline/sneaky.ts', RUNS_RESOURCE_SQL)).toEqual(['3:no-restricted-syntax', '5:no-restricted-syntax', '6:no-restricted-syntax']);
    expect(lint('src/audit/sneaky.ts', RUNS_RESOURCE_SQL)).toEqual(['3:no-restricted-syntax', '5:no-restricted-syntax', '6:no-restricted-syntax']);
    expect(lint('src/fhir/storage/ok.ts', RUNS_RESOURCE_SQL)).toEqual([]);
    expect(lint('src/auth/ok.ts', 'export const q = "SELECT * FROM oauth_client WHERE resource_type = 1";')).toEqual([]);
  });
});

/**
 * Runs dependency-cruiser with the project's real `.dependency-cruiser.cjs` (the one `npm run lint`
 * uses) over fixture files laid out as under the project root; answers `rule from -> to` per violation.
 */
function cruise(files: Record<string, string>): string[] {
  const root = mkdtempSync(join(tmpdir(), 'import-rules-'));
  try {
    for (const [path, code] of Object.entries(files)) {
      mkdirSync(dirname(join(root, path)), { recursive: true });
      writeFileSync(join(root, path), code);
    }
    const cli = join(process.cwd(), 'node_modules', 'dependency-cruiser', 'bin', 'dependency-cruiser.mjs');
    const args = [cli, '--config', join(process.cwd(), '.dependency-cruiser.cjs'), '--output-type', 'json', 'src'];
    // A violation exits non-zero; the JSON report is on stdout either way.
    let out: string;
    try {
      out = execFileSync(process.execPath, args, { cwd: root, encoding: 'utf8' });
    } catch (err) {
      out = (err as { stdout: string }).stdout;
    }
    const report = JSON.parse(out) as { summary: { violations: { rule: { name: string }; from: string; to: string }[] } };
    return report.summary.violations.map((v) => `${v.rule.name} ${v.from} -> ${v.to}`).sort();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

/** The import rules (docs/architecture.md): no circles, type-only imports included; common/ at the bottom. */
describe('import rules (dependency-cruiser)', () => {
  // Both imports are type-only: without tsPreCompilationDeps the circle would not be seen.
  it('refuses an import circle of type-only imports (reported once per circle)', () => {
    expect(
      cruise({
        'src/fhir/pipeline/interaction.ts': `import type { Declared } from '../operations/declared';\nexport interface Interaction { declared?: Declared }\n`,
        'src/fhir/operations/declared.ts': `import type { Interaction } from '../pipeline/interaction';\nexport interface Declared { run(i: Interaction): void }\n`,
      }),
    ).toEqual(['no-circular src/fhir/operations/declared.ts -> src/fhir/pipeline/interaction.ts']);
  });

  it('allows the same types once they sit in a vocabulary file below both', () => {
    expect(
      cruise({
        'src/fhir/pipeline/declaration.ts': `export interface Declared { name: string }\n`,
        'src/fhir/pipeline/interaction.ts': `import type { Declared } from './declaration';\nexport interface Interaction { declared?: Declared }\n`,
        'src/fhir/operations/declared.ts': `import type { Interaction } from '../pipeline/interaction';\nimport type { Declared } from '../pipeline/declaration';\nexport type Run = (i: Interaction, d: Declared) => void;\n`,
      }),
    ).toEqual([]);
  });

  it('refuses an import from src/common into any other src folder, type-only too', () => {
    expect(
      cruise({
        'src/common/http/filter.ts': `import type { AuditRecord } from '../../audit/audit-record';\nimport { loadAppConfig } from '../../config/app.config';\nimport { FhirError } from '../fhir-error';\nexport const f = (r: AuditRecord) => [r, loadAppConfig, FhirError];\n`,
        'src/common/fhir-error.ts': `export class FhirError {}\n`,
        'src/audit/audit-record.ts': `import { FhirError } from '../common/fhir-error';\nexport interface AuditRecord { e: FhirError }\n`,
        'src/config/app.config.ts': `export const loadAppConfig = () => ({});\n`,
      }),
    ).toEqual([
      'common-imports-no-domain src/common/http/filter.ts -> src/audit/audit-record.ts',
      'common-imports-no-domain src/common/http/filter.ts -> src/config/app.config.ts',
    ]);
  });

  it('keeps the layers: records core and vocabulary below policy, policy below the orchestration, the orchestration below controllers and modules', () => {
    expect(
      cruise({
        'src/fhir/storage/repo.ts': `import { ConsentStage } from '../../consent/stage';\nexport const r = ConsentStage;\n`,
        'src/consent/stage.ts': `import { FhirPipeline } from '../pipeline/fhir-pipeline.service';\nexport const ConsentStage = FhirPipeline;\n`,
        // A controller left in a policy module is below the pipeline it calls: it belongs in src/rest.
        'src/auth/clients.controller.ts': `import { FhirPipeline } from '../pipeline/fhir-pipeline.service';\nexport const c = FhirPipeline;\n`,
        'src/fhir/operations/op.ts': `import { FhirPipeline } from '../../pipeline/fhir-pipeline.service';\nexport const o = FhirPipeline;\n`,
        'src/pipeline/fhir-pipeline.service.ts': `import { Referral } from '../referrals/referral';\nimport { writer } from '../rest/writer';\nexport const FhirPipeline = [Referral, writer];\n`,
        'src/pipeline/access-issuer.ts': `export const issueAccessContext = 1;\n`,
        'src/rest/writer.ts': `export const writer = 1;\n`,
        'src/rest/fhir.controller.ts': `import { FhirPipeline } from '../pipeline/fhir-pipeline.service';\nexport const f = FhirPipeline;\n`,
        'src/referrals/referral.ts': `export const Referral = 1;\n`,
        'src/identity/matching.job.ts': `import { FhirPipeline } from '../pipeline/fhir-pipeline.service';\nimport { issueAccessContext } from '../pipeline/access-issuer';\nexport const j = [FhirPipeline, issueAccessContext];\n`,
        'src/app.module.ts': `import { Referral } from './referrals/referral';\nexport const m = Referral;\n`,
      }),
    ).toEqual([
      'access-issuer-in-pipeline-only src/identity/matching.job.ts -> src/pipeline/access-issuer.ts',
      'exchange-modules-on-top src/pipeline/fhir-pipeline.service.ts -> src/referrals/referral.ts',
      'orchestration-below-rest-and-modules src/pipeline/fhir-pipeline.service.ts -> src/referrals/referral.ts',
      'orchestration-below-rest-and-modules src/pipeline/fhir-pipeline.service.ts -> src/rest/writer.ts',
      'policy-below-orchestration src/auth/clients.controller.ts -> src/pipeline/fhir-pipeline.service.ts',
      'policy-below-orchestration src/consent/stage.ts -> src/pipeline/fhir-pipeline.service.ts',
      'records-core-below-orchestration src/fhir/operations/op.ts -> src/pipeline/fhir-pipeline.service.ts',
      'records-core-imports-no-policy src/fhir/storage/repo.ts -> src/consent/stage.ts',
    ]);
  });
});
