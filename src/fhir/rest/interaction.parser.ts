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
  parts: { resourceType?: string; id?: string; versionId?: string; operation?: string } = {},
): Interaction {
  const defs = FhirDefinitions.get();
  if (parts.resourceType !== undefined && !defs.isStorable(parts.resourceType)) {
    throw new FhirError(404, 'not-supported', `Unknown resource type '${parts.resourceType.slice(0, 64)}'`);
  }
  if (parts.id !== undefined && !ID_RE.test(parts.id)) {
    throw FhirError.badRequest(`'${parts.id.slice(0, 64)}' is not a valid resource id`);
  }
  const prefer = parsePrefer(req.header('prefer'));
  return {
    kind,
    ...parts,
    body: req.body,
    query: req.query as QueryParams,
    ifMatch: req.header('if-match') ?? undefined,
    ifNoneExist: req.header('if-none-exist') ?? undefined,
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
