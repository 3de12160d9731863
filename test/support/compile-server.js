// Compiles the server as `npm run build` lays it out (<out>/main.js, <out>/migrations/*.js) with
// TypeScript's transpileModule: no type-checking (the test script type-checks first), so seconds
// instead of a minute. Run as a script (`node compile-server.js <out>`): inside Jest's module
// sandbox transpileModule fails ("Output generation failed").
const { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } = require('node:fs');
const { dirname, join, relative } = require('node:path');
const ts = require('typescript');

const ROOT = join(__dirname, '..', '..');
const out = process.argv[2];

function tsFiles(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return tsFiles(path);
    return e.name.endsWith('.ts') && !e.name.endsWith('.spec.ts') && !e.name.endsWith('.d.ts') ? [path] : [];
  });
}

// As tsconfig.json compiles it (commonjs, decorators with metadata).
const compilerOptions = {
  module: ts.ModuleKind.CommonJS,
  target: ts.ScriptTarget.ES2023,
  experimentalDecorators: true,
  emitDecoratorMetadata: true,
  esModuleInterop: true,
  isolatedModules: true,
};
rmSync(out, { recursive: true, force: true });
const sources = [
  ...tsFiles(join(ROOT, 'src')).map((f) => [f, join(out, relative(join(ROOT, 'src'), f))]),
  ...tsFiles(join(ROOT, 'migrations')).map((f) => [f, join(out, 'migrations', relative(join(ROOT, 'migrations'), f))]),
];
for (const [from, to] of sources) {
  const { outputText } = ts.transpileModule(readFileSync(from, 'utf8'), { compilerOptions, fileName: from });
  mkdirSync(dirname(to), { recursive: true });
  writeFileSync(to.replace(/\.ts$/, '.js'), outputText);
}
// JSON modules the code imports (resolveJsonModule), emitted beside the .js as `npm run build` does.
function jsonFiles(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return jsonFiles(path);
    return e.name.endsWith('.json') ? [path] : [];
  });
}
for (const from of jsonFiles(join(ROOT, 'src'))) {
  const to = join(out, relative(join(ROOT, 'src'), from));
  mkdirSync(dirname(to), { recursive: true });
  writeFileSync(to, readFileSync(from));
}
