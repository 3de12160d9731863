/**
 * The server's CPU per request by stage, from a V8 .cpuprofile and the time windows in which one
 * kind of request ran alone (docs/performance.md, "Node CPU per request, fourth pass").
 *
 * Each sample goes to the stage of the innermost frame that names one (walking from the leaf to the
 * root): Node's own frames (timers, streams) are charged to whichever of our stages or libraries
 * called them. Native socket writes are a stage of their own, by peer: V8 samples wall time, and a
 * write on loopback runs the peer's TCP receive and often yields the core to the woken peer, so
 * they are not all this process's CPU. Samples with no such frame keep their origin (`node:http`,
 * GC, `(program)`). Idle time is left out.
 */
export interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}
export interface ProfileWindow {
  kind: string;
  fromUs: number;
  toUs: number;
  requests: number;
}

/** First match wins, tested against `url` (and the function name for V8's pseudo-frames). */
const STAGES: [RegExp, string][] = [
  [/node_modules\/(pg|pg-protocol|pg-pool|pg-types|postgres-[a-z]+)\//, 'pg driver'],
  [/node_modules\/typeorm\//, 'TypeORM (transaction/query runner)'],
  [/node_modules\/(pino|pino-http|pino-std-serializers|sonic-boom|fast-redact|thread-stream)\//, 'logging (pino)'],
  [/node_modules\/(jose|passport|passport-http-bearer|@nestjs\/passport)\//, 'auth libraries (passport, jose)'],
  [/node_modules\/(helmet|compression|compressible|negotiator|accepts|vary|on-headers|bytes)\//, 'helmet / compression / negotiation'],
  [/node_modules\/(express|router|body-parser|finalhandler|send|serve-static|qs|path-to-regexp|parseurl|content-type|type-is|raw-body|depd|encodeurl|escape-html|mime-types|etag|fresh|range-parser|cookie)\//, 'Express'],
  [/node_modules\/@nestjs\//, 'Nest (router, guards, interceptors, pipes)'],
  [/node_modules\/(rxjs|nestjs-cls)\//, 'Nest (router, guards, interceptors, pipes)'],
  [/node_modules\/@medplum\//, '@medplum/core (FHIRPath, search parsing)'],
  [/node_modules\/pg-boss\//, 'pg-boss pollers'],
  [/\/dist(-bench)?\/(src\/)?auth\//, 'auth (token, client status, rate limit)'],
  [/\/dist(-bench)?\/(src\/)?consent\//, 'consent predicate'],
  [/\/dist(-bench)?\/(src\/)?audit\//, 'audit record (build, chain append)'],
  [/\/dist(-bench)?\/(src\/)?fhir\/search\//, 'search (parse, SQL building)'],
  [/\/dist(-bench)?\/(src\/)?fhir\/storage\//, 'storage (SQL, rows)'],
  [/\/dist(-bench)?\/(src\/)?fhir\//, 'records core (vocabulary, validation, operations)'],
  [/\/dist(-bench)?\/(src\/)?pipeline\//, 'pipeline (authorize, access issuing, execute)'],
  [/\/dist(-bench)?\/(src\/)?rest\//, 'REST controller and response writer'],
  [/\/dist(-bench)?\/(src\/)?common\//, 'common (request context, JSON, HTTP middleware)'],
  [/\/dist(-bench)?\/(src\/)?referrals\/subscriptions\//, 'subscriptions (matching, delivery)'],
  [/\/dist(-bench)?\/(src\/)?jobs\//, 'jobs (polling workers, queue)'],
  [/\/dist-bench\/bench\//, 'bench harness (in-process wrappers)'],
  [/\/dist(-bench)?\//, 'server (other)'],
  [/node_modules\//, 'other packages'],
];

/** Native socket writes: the kernel's loopback TCP work (and the peer it wakes), apart by peer. */
const SOCKET_WRITES = new Set(['writev', 'writeBuffer', 'writeUtf8String', 'writeLatin1String', 'writeAsciiString']);

function stageOf(url: string): string | undefined {
  for (const [re, stage] of STAGES) if (re.test(url)) return stage;
  return undefined;
}

function originOf(frame: ProfileNode['callFrame']): string {
  if (!frame.url) return frame.functionName.startsWith('(') ? frame.functionName : `native ${frame.functionName || '(anonymous)'}`;
  if (frame.url.startsWith('node:')) return `Node (${frame.url.split('/').slice(0, 3).join('/')})`;
  return frame.url;
}

export interface StageRow {
  stage: string;
  ms: number;
  msPerRequest: number;
  share: number;
}

/** CPU ms per request by stage inside one window; `(idle)` samples are not CPU. */
export function stagesIn(profile: CpuProfile, window: ProfileWindow): { rows: StageRow[]; cpuMsPerRequest: number } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const stageCache = new Map<number, string>();
  const stageOfNode = (id: number): string => {
    const cached = stageCache.get(id);
    if (cached) return cached;
    let stage: string | undefined;
    if (SOCKET_WRITES.has(byId.get(id)!.callFrame.functionName)) {
      let toDatabase = false;
      for (let at: number | undefined = id; at !== undefined && !toDatabase; at = parent.get(at)) toDatabase = /node_modules\/pg\//.test(byId.get(at)!.callFrame.url);
      stage = toDatabase ? 'socket writes to PostgreSQL (syscall)' : 'socket writes to the HTTP client (syscall)';
    }
    for (let at: number | undefined = id; at !== undefined && !stage; at = parent.get(at)) stage = stageOf(byId.get(at)!.callFrame.url);
    stage ??= originOf(byId.get(id)!.callFrame);
    stageCache.set(id, stage);
    return stage;
  };
  const us = new Map<string, number>();
  let t = profile.startTime;
  profile.samples.forEach((id, i) => {
    t += profile.timeDeltas[i] ?? 0;
    if (t < window.fromUs || t > window.toUs) return;
    const name = byId.get(id)!.callFrame.functionName;
    if (name === '(idle)') return;
    const stage = stageOfNode(id);
    // The delta before a sample is the time it stands for (V8's own convention in DevTools).
    us.set(stage, (us.get(stage) ?? 0) + (profile.timeDeltas[i] ?? 0));
  });
  const total = [...us.values()].reduce((a, b) => a + b, 0);
  const rows = [...us.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([stage, v]) => ({ stage, ms: v / 1000, msPerRequest: v / 1000 / window.requests, share: v / total }));
  return { rows, cpuMsPerRequest: total / 1000 / window.requests };
}

/** Self time by function inside one window, top n, µs per request. */
export function functionsIn(profile: CpuProfile, window: ProfileWindow, n: number): { fn: string; usPerRequest: number }[] {
  const byId = new Map(profile.nodes.map((x) => [x.id, x]));
  const us = new Map<string, number>();
  let t = profile.startTime;
  profile.samples.forEach((id, i) => {
    t += profile.timeDeltas[i] ?? 0;
    if (t < window.fromUs || t > window.toUs) return;
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    if (functionName === '(idle)') return;
    const fn = `${functionName || '(anonymous)'} ${url.replace(/^.*node_modules\//, '').replace(/^.*\/dist\//, 'dist/')}:${lineNumber + 1}`;
    us.set(fn, (us.get(fn) ?? 0) + (profile.timeDeltas[i] ?? 0));
  });
  return [...us.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([fn, v]) => ({ fn, usPerRequest: Math.round(v / window.requests) }));
}

/** Markdown: one stage table and one function table per window. */
export function stagesMarkdown(profile: CpuProfile, windows: ProfileWindow[], where = ' at one client'): string {
  return windows
    .map((w) => {
      const { rows, cpuMsPerRequest } = stagesIn(profile, w);
      const fns = functionsIn(profile, w, 25);
      return `## ${w.kind}${where}: ${w.requests} requests, ${cpuMsPerRequest.toFixed(3)} ms of sampled server CPU per request

| stage | µs per request | % |
|---|---|---|
${rows.map((r) => `| ${r.stage.replace(/\|/g, '\\|')} | ${Math.round(r.msPerRequest * 1000)} | ${(r.share * 100).toFixed(1)} |`).join('\n')}

| function (self) | µs per request |
|---|---|
${fns.map((f) => `| ${f.fn.replace(/\|/g, '\\|')} | ${f.usPerRequest} |`).join('\n')}
`;
    })
    .join('\n');
}
