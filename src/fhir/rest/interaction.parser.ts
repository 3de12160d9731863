import type { Request } from 'express';
import { FhirError } from '../../common/fhir-error';
import { FhirDefinitions } from '../definitions/fhir-definitions';
import type { Interaction, InteractionKind, PreferReturn, QueryParams } from '../pipeline/interaction';

const ID_RE = /^[A-Za-z0-9\-.]{1,64}$/;

/**
 * HTTP -> Interaction. Checks the shape of the request (known type, well-formed id, Prefer),
 * touches no data.
 */
export function parseInteraction(
  req: Request,
  kind: InteractionKind,
  parts: { resourceType?: string; id?: string; versionId?: string; operation?: string; conditional?: boolean } = {},
): Interaction {
  const defs = FhirDefinitions.get();
  if (parts.resourceType !== undefined && !defs.isStorable(parts.resourceType)) {
    throw new FhirError(404, 'not-supported', `Unknown resource type '${parts.resourceType.slice(0, 64)}'`);
  }
  if (parts.id !== undefined && !ID_RE.test(parts.id)) {
    throw FhirError.badRequest(`'${parts.id.slice(0, 64)}' is not a valid resource id`);
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
  return {
    kind,
    ...ids,
    conditional: criteria,
    body: req.body,
    query: req.query as QueryParams,
    ifMatch: req.header('if-match') ?? undefined,
    ifNoneExist: req.header('if-none-exist') ?? undefined,
    ifNoneMatch: req.header('if-none-match') ?? undefined,
    preferReturn: prefer.return,
    path: pathBelowBase(req),
  };
}

function parsePrefer(header: string | undefined): { return?: PreferReturn } {
  if (!header) return {};
  const m = /(?:^|[;,\s])return=(minimal|representation|OperationOutcome)\b/.exec(header);
  return { return: m?.[1] as PreferReturn | undefined };
}

/** The request path after the FHIR base (e.g. `/Patient/1/_history`), without query. */
function pathBelowBase(req: Request): string {
  const path = req.path;
  const base = (req.baseUrl || '') as string;
  return base && path.startsWith(base) ? path.slice(base.length) : path.replace(/^\/[^/]+/, '');
}
