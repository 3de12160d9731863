import { parentPort, workerData } from 'node:worker_threads';
import type { Resource } from '@medplum/fhirtypes';
import { FhirError } from '../../common/fhir-error';
import { parseJsonKeepingDecimals } from '../../common/fhir-json';
import type { AppConfig } from '../../config/app.config';
import { ResourceValidator } from './resource.validator';
import type { ValidationReply, ValidationRequest } from './resource-validation.thread';

/**
 * The worker thread's side (resource-validation.thread.ts starts it): the same ResourceValidator,
 * its own copy of the definitions, one resource at a time. The resource arrives as JSON text so
 * decimals keep their digits (`1.50`), as they would in the main thread.
 */
const validator = new ResourceValidator({ resourceCost: (workerData as { resourceCost: AppConfig['resourceCost'] }).resourceCost } as AppConfig);

parentPort!.on('message', ({ id, json, extraProfiles }: ValidationRequest) => {
  let reply: ValidationReply;
  try {
    reply = { id, issues: validator.issues(parseJsonKeepingDecimals(json) as Resource, extraProfiles) };
  } catch (err) {
    reply =
      err instanceof FhirError
        ? { id, refusal: { status: err.status, issues: err.issues, headers: err.headers } }
        : { id, failure: err instanceof Error ? err.message : String(err) };
  }
  parentPort!.postMessage(reply);
});
