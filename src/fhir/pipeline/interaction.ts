import type { AccessAttributes } from '../storage/access-attributes';
import type { Resource } from '@medplum/fhirtypes';
import type { OperationDeclaration } from './operation-declaration';
import { FhirError } from '../../common/fhir-error';
import type { WriteDecision } from './write-decision';

/** The FHIR interactions (http.html) and operations the pipeline knows. */
export type InteractionKind =
  | 'capabilities'
  | 'create'
  | 'read'
  | 'vread'
  | 'update'
  | 'patch'
  | 'delete'
  | 'history-instance'
  | 'history-type'
  | 'history-system'
  | 'search-type'
  | 'search-system'
  | 'search-compartment'
  | 'batch'
  | 'transaction'
  | 'operation';

export type QueryParams = Record<string, string | string[] | undefined>;

export type PreferReturn = 'minimal' | 'representation' | 'OperationOutcome';

/** What every interaction carries, whatever its kind. */
interface InteractionCommon {
  query: QueryParams;
  /** Route path of the HTTP request relative to the FHIR base, for links and audit. */
  path: string;
  preferReturn?: PreferReturn;
  /** `Prefer: handling=strict|lenient` for unknown search parameters (lenient by default). */
  preferHandling?: 'strict' | 'lenient';
  /** Fields of other kinds are absent, so code that reads them across kinds still type-checks. */
  resourceType?: string;
  id?: string;
  versionId?: string;
  operation?: string;
  compartment?: { type: string; id: string };
  body?: unknown;
}

export interface CapabilitiesInteraction extends InteractionCommon {
  kind: 'capabilities';
}

export interface CreateInteraction extends InteractionCommon {
  kind: 'create';
  resourceType: string;
  body: unknown;
  ifNoneExist?: string;
  /** Id a transaction assigned up front, so references to the entry's fullUrl can be rewritten. */
  assignedId?: string;
  /** Set by a transaction that resolved and rewrote the entry's conditional references (`Type?criteria`) up front: none to resolve here. */
  noConditionalReferences?: boolean;
}

export interface ReadInteraction extends InteractionCommon {
  kind: 'read';
  resourceType: string;
  id: string;
  ifNoneMatch?: string;
  ifModifiedSince?: string;
}

export interface VreadInteraction extends InteractionCommon {
  kind: 'vread';
  resourceType: string;
  id: string;
  versionId: string;
  ifNoneMatch?: string;
  ifModifiedSince?: string;
}

/** `PUT /Type/id`, or conditional (`PUT /Type?criteria`): exactly one of `id` and `conditional`. */
export type UpdateInteraction = InteractionCommon & {
  kind: 'update';
  resourceType: string;
  body: unknown;
  ifMatch?: string;
  /** Id a transaction assigned up front (conditional update that creates). */
  assignedId?: string;
  /** Set by a transaction that resolved and rewrote the entry's conditional references (`Type?criteria`) up front: none to resolve here. */
  noConditionalReferences?: boolean;
} & ({ id: string; conditional?: undefined } | { conditional: string; id?: undefined });

export interface PatchInteraction extends InteractionCommon {
  kind: 'patch';
  resourceType: string;
  id: string;
  body: unknown;
  ifMatch?: string;
}

/** `DELETE /Type/id`, or conditional (`DELETE /Type?criteria`). */
export type DeleteInteraction = InteractionCommon & {
  kind: 'delete';
  resourceType: string;
  ifMatch?: string;
} & ({ id: string; conditional?: undefined } | { conditional: string; id?: undefined });

export interface HistoryInteraction extends InteractionCommon {
  kind: 'history-instance' | 'history-type' | 'history-system';
}

export interface InstanceHistoryInteraction extends HistoryInteraction {
  kind: 'history-instance';
  resourceType: string;
  id: string;
}

export interface SearchInteraction extends InteractionCommon {
  kind: 'search-type' | 'search-system' | 'search-compartment';
}

export interface BundleInteraction extends InteractionCommon {
  kind: 'batch' | 'transaction';
  body: unknown;
}

export interface OperationInteraction extends InteractionCommon {
  kind: 'operation';
  /** Operation name without `$`. */
  operation: string;
  /** HTTP method of the request: state-changing operations refuse GET. */
  method: 'GET' | 'POST';
  /** `Prefer: respond-async` was sent (an asynchronous operation's kick-off needs it). */
  preferAsync?: boolean;
  /** The request's Accept header, for operations whose kick-off checks it (Bulk Data). */
  accept?: string;
  body?: unknown;
  /** The declaration of the operation invoked, set by the pipeline before authorization. */
  operationDeclaration?: OperationDeclaration;
}

/**
 * One parsed FHIR interaction: what is asked, with no data access yet, as a union discriminated by
 * `kind` so each kind carries exactly what it needs. Controllers build it from HTTP; batch entries
 * and operations build it from their own input (`buildInteraction`), so all share one pipeline.
 */
export type Interaction =
  | CapabilitiesInteraction
  | CreateInteraction
  | ReadInteraction
  | VreadInteraction
  | UpdateInteraction
  | PatchInteraction
  | DeleteInteraction
  | InstanceHistoryInteraction
  | (HistoryInteraction & { kind: 'history-type' | 'history-system' })
  | SearchInteraction
  | BundleInteraction
  | OperationInteraction;

/** The parts a route or Bundle entry names, before they are checked against the kind. */
export interface InteractionParts extends Omit<InteractionCommon, 'query' | 'path'> {
  query?: QueryParams;
  path: string;
  body?: unknown;
  conditional?: string;
  ifMatch?: string;
  ifNoneExist?: string;
  ifNoneMatch?: string;
  ifModifiedSince?: string;
  method?: 'GET' | 'POST';
  preferAsync?: boolean;
  accept?: string;
}

/**
 * The one constructor of interactions (REST routes and Bundle entries): checks that the kind has
 * what it needs (an id, a body, criteria) and keeps only what belongs to it.
 */
export function buildInteraction(kind: InteractionKind, parts: InteractionParts): Interaction {
  const common = {
    query: parts.query ?? {},
    path: parts.path,
    preferReturn: parts.preferReturn,
    preferHandling: parts.preferHandling,
  };
  const type = (): string => {
    if (!parts.resourceType) throw FhirError.badRequest(`A ${kind} interaction needs a resource type`);
    return parts.resourceType;
  };
  const id = (): string => {
    if (parts.id === undefined) throw FhirError.badRequest(`A ${kind} interaction needs a resource id`);
    return parts.id;
  };
  const target = (): { id: string; conditional?: undefined } | { conditional: string; id?: undefined } =>
    parts.conditional !== undefined ? { conditional: parts.conditional } : { id: id() };
  switch (kind) {
    case 'capabilities':
      return { kind, ...common };
    case 'create':
      return { kind, ...common, resourceType: type(), body: parts.body, ifNoneExist: parts.ifNoneExist };
    case 'read':
      return { kind, ...common, resourceType: type(), id: id(), ifNoneMatch: parts.ifNoneMatch, ifModifiedSince: parts.ifModifiedSince };
    case 'vread':
      if (parts.versionId === undefined) throw FhirError.badRequest('A vread needs a version id');
      return { kind, ...common, resourceType: type(), id: id(), versionId: parts.versionId, ifNoneMatch: parts.ifNoneMatch, ifModifiedSince: parts.ifModifiedSince };
    case 'update':
      return { kind, ...common, resourceType: type(), body: parts.body, ifMatch: parts.ifMatch, ...target() };
    case 'patch':
      return { kind, ...common, resourceType: type(), id: id(), body: parts.body, ifMatch: parts.ifMatch };
    case 'delete':
      return { kind, ...common, resourceType: type(), ifMatch: parts.ifMatch, ...target() };
    case 'history-instance':
      return { kind, ...common, resourceType: type(), id: id() };
    case 'history-type':
      return { kind, ...common, resourceType: type() };
    case 'history-system':
      return { kind, ...common };
    case 'search-type':
      return { kind, ...common, resourceType: type() };
    case 'search-system':
      return { kind, ...common };
    case 'search-compartment':
      if (!parts.compartment) throw FhirError.badRequest('A compartment search needs a compartment');
      return { kind, ...common, resourceType: type(), compartment: parts.compartment };
    case 'batch':
    case 'transaction':
      return { kind, ...common, body: parts.body };
    case 'operation':
      if (!parts.operation) throw FhirError.badRequest('An operation interaction needs an operation name');
      return {
        kind,
        ...common,
        operation: parts.operation,
        method: parts.method ?? 'POST',
        preferAsync: parts.preferAsync,
        accept: parts.accept,
        body: parts.body,
        resourceType: parts.resourceType,
        id: parts.id,
        versionId: parts.versionId,
      };
  }
}

/**
 * A resource the interaction read or wrote, with the version touched and the patients it belongs to:
 * an entity of the interaction's audit record.
 */
export interface AuditEntity {
  reference: string;
  versionId?: string;
  /** Patient ids of the resource's Patient compartment (from the stored `compartments`). */
  patients: readonly string[];
}

/** What execution produced; the REST layer turns it into an HTTP response. */
export interface InteractionResult {
  status: number;
  resource?: Resource;
  /** For writes: the stored version (used for ETag/Last-Modified/Location). */
  versionId?: string;
  lastUpdated?: string;
  location?: string;
  headers?: Record<string, string>;
  /** Resources read or written, with version and patients, for the audit record (never content). */
  touched?: AuditEntity[];
  /** Read/vread: the attributes access was judged on (consent explanation in the audit record). */
  judged?: AccessAttributes;
  /** Writes: the write policy that permitted the change and its reason (audit record). */
  writeDecision?: WriteDecision;
  /** Operations: the parameters for the audit record's query entity, when the operation vouches they hold no PHI ($evaluate-measure's period). */
  auditQuery?: string;
}

/** The interaction class used by scopes and audit: c r u d s (SMART v2). */
export function interactionVerb(kind: InteractionKind): 'c' | 'r' | 'u' | 'd' | 's' | 'x' {
  switch (kind) {
    case 'create':
      return 'c';
    case 'read':
    case 'vread':
    case 'history-instance':
    case 'history-type':
    case 'history-system':
      return 'r';
    case 'update':
    case 'patch':
      return 'u';
    case 'delete':
      return 'd';
    case 'search-type':
    case 'search-system':
    case 'search-compartment':
      return 's';
    default:
      return 'x';
  }
}
