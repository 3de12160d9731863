import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { isRawDecimal, parseJsonKeepingDecimals } from '../src/common/fhir-json';
import { parseFhirXml, resourceToXml } from '../src/common/fhir-xml';

/**
 * npm run check:xml-examples — JSON -> XML -> JSON over the official R4 examples
 * (`../shared/data/r4-examples`, the hl7.fhir.r4.examples package) and the Synthea Bundles
 * (`../shared/data/synthea`, 19-digit decimals) when present. A file passes when the JSON read
 * back equals the original exactly (decimals compared as written); a file that differs only in
 * the whitespace of its XHTML narrative would be counted apart. Writes
 * bench/results/xml-examples.{json,md}. Options: `SHARED_DATA_DIR`, `XML_EXAMPLES_SETS`
 * (`r4-examples,synthea`).
 */

interface Failure {
  file: string;
  stage: 'json' | 'write' | 'read' | 'compare';
  message: string;
}

function sharedData(): string | undefined {
  if (process.env.SHARED_DATA_DIR) return process.env.SHARED_DATA_DIR;
  // ../shared/data from the repository, or from a worktree nested deeper.
  for (let dir = resolve(process.cwd(), '..'); dir !== dirname(dir); dir = dirname(dir)) {
    if (existsSync(join(dir, 'shared', 'data'))) return join(dir, 'shared', 'data');
  }
  return undefined;
}

/** JSON with sorted keys and raw decimals as written, so equal resources give equal text. */
function canonical(value: unknown, normalizeXhtml = false): string {
  const sort = (v: unknown, key?: string): unknown => {
    if (typeof v === 'string' && normalizeXhtml && key === 'div') return v.replace(/>\s+</g, '><').replace(/\s+/g, ' ').trim();
    if (v === null || typeof v !== 'object' || isRawDecimal(v)) return v;
    if (Array.isArray(v)) return v.map((x) => sort(x, key));
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, sort((v as Record<string, unknown>)[k], k)]),
    );
  };
  return JSON.stringify(sort(value));
}

function firstDifference(a: string, b: string): string {
  let i = 0;
  while (i < a.length && a[i] === b[i]) i++;
  return `at character ${i}: ${JSON.stringify(a.slice(Math.max(0, i - 40), i + 40))} vs ${JSON.stringify(b.slice(Math.max(0, i - 40), i + 40))}`;
}

function checkSet(dir: string): { files: number; equal: number; equalIgnoringWhitespace: number; whitespaceOnly: string[]; xmlBytes: number; ms: number; failures: Failure[] } {
  const started = Date.now();
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort();
  const failures: Failure[] = [];
  let equal = 0;
  let equalIgnoringWhitespace = 0;
  const whitespaceOnly: string[] = [];
  let xmlBytes = 0;
  for (const file of files) {
    let json: unknown;
    try {
      json = parseJsonKeepingDecimals(readFileSync(join(dir, file), 'utf8'));
    } catch (err) {
      failures.push({ file, stage: 'json', message: (err as Error).message.slice(0, 200) });
      continue;
    }
    let xml: string;
    try {
      xml = resourceToXml(json as object);
      xmlBytes += Buffer.byteLength(xml);
    } catch (err) {
      failures.push({ file, stage: 'write', message: (err as Error).message.slice(0, 200) });
      continue;
    }
    let back: unknown;
    try {
      back = parseFhirXml(xml);
    } catch (err) {
      const e = err as Error & { issues?: { expression?: string[] }[] };
      failures.push({ file, stage: 'read', message: `${e.message.slice(0, 200)} ${e.issues?.[0]?.expression?.join(',') ?? ''}`.trim() });
      continue;
    }
    const [a, b] = [canonical(json), canonical(back)];
    if (a === b) equal++;
    else if (canonical(json, true) === canonical(back, true)) {
      equalIgnoringWhitespace++;
      whitespaceOnly.push(file);
    }
    else failures.push({ file, stage: 'compare', message: firstDifference(a, b) });
  }
  return { files: files.length, equal, equalIgnoringWhitespace, whitespaceOnly, xmlBytes, ms: Date.now() - started, failures };
}

function main(): void {
  const data = sharedData();
  const sets = (process.env.XML_EXAMPLES_SETS ?? 'r4-examples,synthea').split(',').filter(Boolean);
  const results: Record<string, ReturnType<typeof checkSet>> = {};
  for (const set of sets) {
    const dir = data && join(data, set);
    if (!dir || !existsSync(dir)) {
      console.log(`${set}: not present (${dir ?? '../shared/data not found'}), skipped`);
      continue;
    }
    results[set] = checkSet(dir);
    const r = results[set];
    console.log(`${set}: ${r.files} files, ${r.equal} equal, ${r.equalIgnoringWhitespace} equal ignoring XHTML whitespace, ${r.failures.length} failed (${r.ms} ms)`);
    for (const f of r.failures.slice(0, 20)) console.log(`  ${f.file} [${f.stage}] ${f.message}`);
  }
  const machine = `${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
  const date = new Date().toISOString();
  const out = join(process.cwd(), 'bench', 'results');
  writeFileSync(join(out, 'xml-examples.json'), JSON.stringify({ date, machine, results }, null, 2) + '\n');
  const rows = Object.entries(results).map(
    ([set, r]) => `| \`${set}\` | ${r.files} | ${r.equal} | ${r.equalIgnoringWhitespace} | ${r.failures.length} | ${(r.xmlBytes / 2 ** 20).toFixed(1)} MiB | ${(r.ms / 1000).toFixed(1)} s |`,
  );
  const failureLines = Object.entries(results).flatMap(([set, r]) => r.failures.map((f) => `- \`${set}/${f.file}\` (${f.stage}): ${f.message}`));
  writeFileSync(
    join(out, 'xml-examples.md'),
    [
      '# FHIR XML round trip of the shared example data (`npm run check:xml-examples`)',
      '',
      `${date}, ${machine}. Each file: FHIR JSON (decimals kept as written) -> R4 XML (\`resourceToXml\`) -> FHIR JSON (\`parseFhirXml\`), compared exactly (sorted keys, decimals by their text).`,
      '',
      '| set | files | equal | equal ignoring XHTML whitespace | failed | XML written | time |',
      '|---|---|---|---|---|---|---|',
      ...rows,
      '',
      ...Object.entries(results).flatMap(([set, r]) =>
        r.whitespaceOnly.map(
          (f) => `\`${set}/${f}\` differs in narrative whitespace only: XML parsers normalize line ends (XML 1.0 §2.11), so a CR LF inside \`div\` comes back as LF.`,
        ),
      ),
      '',
      failureLines.length ? '## Failures\n' : 'No failures.',
      ...failureLines,
      '',
    ].join('\n'),
  );
  if (Object.values(results).some((r) => r.failures.length)) process.exitCode = 1;
}

main();
