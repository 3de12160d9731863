import type request from 'supertest';
import { FHIR_JSON } from './fixtures';

type Agent = ReturnType<typeof request.agent>;

/** POSTs a transaction Bundle of these entries to the base; the response is asserted by the caller. */
export function postTransaction(api: Agent, entry: unknown[]): Promise<request.Response> {
  return api.post('/fhir').set('Content-Type', FHIR_JSON).send({ resourceType: 'Bundle', type: 'transaction', entry });
}

/** Stores resources with their own ids (update-as-create) in one transaction. */
export function putAll(api: Agent, resources: Record<string, unknown>[]): Promise<request.Response> {
  return postTransaction(api, resources.map((r) => ({ resource: r, request: { method: 'PUT', url: `${String(r.resourceType)}/${String(r.id)}` } })));
}
