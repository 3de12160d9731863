import { extname, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { OperationOutcomeIssue } from '@medplum/fhirtypes';
import { FhirError } from '../../common/fhir-error';
import type { ResourceCostLimits } from '../../common/resource-cost';

export interface ValidationRequest {
  id: number;
  json: string;
  extraProfiles: readonly string[];
}

export type ValidationIssues = { base: OperationOutcomeIssue[]; profile: OperationOutcomeIssue[] };

export type ValidationReply =
  | { id: number; issues: ValidationIssues }
  | { id: number; refusal: { status: number; issues: OperationOutcomeIssue[]; headers: Record<string, string> } }
  | { id: number; failure: string };

/**
 * Run from TypeScript sources (the tests): a worker thread does not share Jest's transform, so the
 * worker compiles our .ts files as it requires them (TypeScript's own transpiler; the build has
 * them as .js and needs none of this).
 */
const TYPESCRIPT_BOOTSTRAP = `
const { readFileSync } = require('node:fs');
const ts = require('typescript');
const { workerData } = require('node:worker_threads');
require.extensions['.ts'] = (module, file) => {
  const { outputText } = ts.transpileModule(readFileSync(file, 'utf8'), {
    fileName: file,
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2023, experimentalDecorators: true, emitDecoratorMetadata: true, esModuleInterop: true },
  });
  module._compile(outputText, file);
};
require(workerData.entry);
`;

/**
 * Validating a large resource (@medplum/core's validator: about 25 µs per JSON value, seconds for
 * tens of thousands) in the main thread would stall every other request, `/healthz` included. One
 * worker thread, started on first use, validates them one after another; the main thread waits
 * without blocking. Small resources are validated inline, where a round trip would cost more.
 */
export class ResourceValidationThread {
  private worker?: Worker;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (issues: ValidationIssues) => void; reject: (err: Error) => void }>();

  constructor(private readonly resourceCost: ResourceCostLimits) {}

  issues(json: string, extraProfiles: readonly string[]): Promise<ValidationIssues> {
    const worker = this.start();
    const id = this.nextId++;
    return new Promise<ValidationIssues>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.postMessage({ id, json, extraProfiles } satisfies ValidationRequest);
    });
  }

  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    if (worker) await worker.terminate();
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const fromSource = extname(__filename) === '.ts';
    const entry = join(__dirname, `resource-validation.worker${extname(__filename)}`);
    const worker = new Worker(fromSource ? TYPESCRIPT_BOOTSTRAP : entry, {
      eval: fromSource,
      workerData: { entry, resourceCost: this.resourceCost },
    });
    // Never what keeps the process alive; an idle worker costs nothing but memory.
    worker.unref();
    worker.on('message', (reply: ValidationReply) => {
      const waiting = this.pending.get(reply.id);
      if (!waiting) return;
      this.pending.delete(reply.id);
      if ('issues' in reply) waiting.resolve(reply.issues);
      else if ('refusal' in reply) waiting.reject(new FhirError(reply.refusal.status, reply.refusal.issues, undefined, undefined, reply.refusal.headers));
      else waiting.reject(new Error(`Validation worker: ${reply.failure}`));
    });
    const fail = (err: Error): void => {
      if (this.worker === worker) this.worker = undefined;
      for (const waiting of this.pending.values()) waiting.reject(err);
      this.pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`Validation worker exited (code ${code})`)));
    this.worker = worker;
    return worker;
  }
}
