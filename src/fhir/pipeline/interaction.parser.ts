import type { Request } from 'express';
import { FhirError } from '../../common/fhir-error';
import { FhirDefinitions } from '../definitions/fhir-definitions';
import { buildInteraction, Interaction, InteractionKind, PreferReturn, QueryParams } from './interaction';

const ID_RE = /^[A-Za-z0-9\-.]{1,64}$/;
const OPERATION_RE = /^[A-Za-z][A-Za-z0-9\-]{0,63}$/;

/** What the route names: type, id, version, operation, conditional criteria or compartment. */
export interface InteractionTarget {
  resourceType?: string;
  id?: string;
  versionId?: string;
  operation?: string;
  conditional?: boolean;
  compartment?: { type: string; id: string };
}

/**
 * HTTP -> Interaction. Checks the shape of the request (known type, well-formed id, Prefer),
 * touches no data.
 */
export function parseInteraction(
  req: Request,
  kind: InteractionKind,
  parts: InteractionTarget = {},
): Interaction {
  checkTarget(parts);
  if (kind === 'operation' && !OPERATION_RE.test(parts.operation ?? '')) {
    throw FhirError.badRequest(`'$${(parts.operation ?? '').slice(0, 64)}' is not a valid operation name`);
  }
  const prefer = parsePrefer(req.header('prefer'));
  const { conditional, ...ids } = parts;
  let criteria: string | undefined;
  if (conditional) {
    criteria = req.originalUrl.includes('?') ? req.originalUrl.slice(req.originalUrl.indexOf('?') + 1) : '';
    if (!criteria) {
      throw new FhirError(405, 'not-supported', `${req.method} on a resource type needs search criteria (conditional ${kind}) or an id`);
    }
  }
  if (kind === 'batch') {
    const type = (req.body as { resourceType?: unknown; type?: unknown } | undefined)?.type;
    if ((req.body as { resourceType?: unknown } | undefined)?.resourceType !== 'Bundle') {
      throw FhirError.badRequest('POST to the base needs a Bundle of type batch or transaction', ['resourceType']);
    }
    if (type !== 'batch' && type !== 'transaction') {
      throw FhirError.badRequest(`Bundle.type must be batch or transaction, not '${String(type)}'`, ['Bundle.type']);
    }
    kind = type;
  }
  return buildInteraction(kind, {
    ...ids,
    conditional: criteria,
    method: req.method === 'GET' ? 'GET' : 'POST',
    body: req.body,
    // POST _search: form parameters in the body combine with those in the URL.
    query: kind === 'search-type' && req.method === 'POST' ? mergeQuery(req.query as QueryParams, req.body) : (req.query as QueryParams),
    ifMatch: req.header('if-match') ?? undefined,
    ifNoneExist: req.header('if-none-exist') ?? undefined,
    ifNoneMatch: req.header('if-none-match') ?? undefined,
    ifModifiedSince: req.header('if-modified-since') ?? undefined,
    preferReturn: prefer.return,
    preferHandling: prefer.handling,
    preferAsync: prefer.respondAsync,
    accept: req.header('accept') ?? undefined,
    path: pathBelowBase(req),
  });
}

/** Known type, well-formed ids, a compartment this server searches. */
export function checkTarget(parts: InteractionTarget): void {
  const defs = FhirDefinitions.get();
  if (parts.resourceType !== undefined && !defs.isStorable(parts.resourceType)) {
    throw new FhirError(404, 'not-supported', `Unknown resource type '${parts.resourceType.slice(0, 64)}'`);
  }
  if (parts.id !== undefined && !ID_RE.test(parts.id)) {
    throw FhirError.badRequest(`'${parts.id.slice(0, 64)}' is not a valid resource id`);
  }
  if (parts.compartment) {
    if (parts.compartment.type !== 'Patient') {
      throw FhirError.notSupported(`Compartment searches are supported for the Patient compartment, not ${parts.compartment.type.slice(0, 64)}`);
    }
    if (!ID_RE.test(parts.compartment.id)) throw FhirError.badRequest(`'${parts.compartment.id.slice(0, 64)}' is not a valid resource id`);
    if (!defs.patientCompartmentParams(parts.resourceType!).length && parts.resourceType !== 'Patient') {
      throw FhirError.badRequest(`${parts.resourceType} is not in the Patient compartment`);
    }
  }
}

/**
 * The read interactions of a relative URL path (`Patient/1/Observation`), as the REST routes of
 * FhirController read them: used for the GET entries of batch and transaction Bundles.
 */
export function parseReadPath(path: string): { kind: InteractionKind; target: InteractionTarget } {
  const segments = path.replace(/^\//, '').split('/');
  const [type, second, third, fourth] = segments;
  let read: { kind: InteractionKind; target: InteractionTarget } | undefined;
  if (segments.length === 1) read = { kind: 'search-type', target: { resourceType: type } };
  else if (segments.length === 2 && second === '_history') read = { kind: 'history-type', target: { resourceType: type } };
  else if (segments.length === 2) read = { kind: 'read', target: { resourceType: type, id: second } };
  else if (segments.length === 3 && third === '_history') read = { kind: 'history-instance', target: { resourceType: type, id: second } };
  else if (segments.length === 3) read = { kind: 'search-compartment', target: { resourceType: third, compartment: { type, id: second } } };
  else if (segments.length === 4 && third === '_history') read = { kind: 'vread', target: { resourceType: type, id: second, versionId: fourth } };
  if (!read || !type) throw FhirError.badRequest(`'${path.slice(0, 100)}' is not a URL this server reads`);
  // The compartment's own type is checked before the type searched in it, as the route does.
  if (read.target.compartment) checkTarget({ resourceType: read.target.compartment.type });
  checkTarget(read.target);
  return read;
}

function mergeQuery(query: QueryParams, body: unknown): QueryParams {
  const out: QueryParams = { ...query };
  if (!body || typeof body !== 'object' || Array.isArray(body)) return out;
  for (const [k, v] of Object.entries(body as Record<string, string | string[]>)) {
    const prev = out[k];
    const add = Array.isArray(v) ? v : [String(v)];
    out[k] = prev === undefined ? (add.length === 1 ? add[0] : add) : [...(Array.isArray(prev) ? prev : [prev]), ...add];
  }
  return out;
}

function parsePrefer(header: string | undefined): { return?: PreferReturn; handling?: 'strict' | 'lenient'; respondAsync?: boolean } {
  if (!header) return {};
  const m = /(?:^|[;,\s])return=(minimal|representation|OperationOutcome)\b/.exec(header);
  const h = /(?:^|[;,\s])handling=(strict|lenient)\b/.exec(header);
  const respondAsync = /(?:^|[;,\s])respond-async(?![\w-])/.test(header) || undefined;
  return { return: m?.[1] as PreferReturn | undefined, handling: h?.[1] as 'strict' | 'lenient' | undefined, respondAsync };
}

/** The request path after the FHIR base (e.g. `/Patient/1/_history`), without query. */
function pathBelowBase(req: Request): string {
  const path = req.path;
  const base = (req.baseUrl || '') as string;
  return base && path.startsWith(base) ? path.slice(base.length) : path.replace(/^\/[^/]+/, '');
}
