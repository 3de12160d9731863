import type { Resource } from '@medplum/fhirtypes';
import type { AuditEntity } from '../../audit/audit-record';
import type { OperationDeclaration } from '../operations/fhir-operation';

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

/**
 * One parsed FHIR interaction: what is asked, with no data access yet. Controllers build it from
 * HTTP; batch entries and operations build it from their own input, so all share one pipeline.
 */
export interface Interaction {
  kind: InteractionKind;
  resourceType?: string;
  id?: string;
  versionId?: string;
  /** Operation name without `$` (kind 'operation'). */
  operation?: string;
  /** The declaration of the operation invoked, set by the pipeline before authorization. */
  operationDeclaration?: OperationDeclaration;
  /** HTTP method of an operation request: state-changing operations refuse GET. */
  method?: 'GET' | 'POST';
  body?: unknown;
  query: QueryParams;
  ifMatch?: string;
  ifNoneExist?: string;
  ifNoneMatch?: string;
  /** Search criteria of a conditional update or delete (`PUT /Patient?identifier=…`). */
  conditional?: string;
  /** Id a transaction assigned up front to a create, so references to its fullUrl can be rewritten. */
  assignedId?: string;
  preferReturn?: PreferReturn;
  /** `Prefer: handling=strict|lenient` for unknown search parameters (lenient by default). */
  preferHandling?: 'strict' | 'lenient';
  /** Compartment search: `GET /Patient/123/Observation`. */
  compartment?: { type: string; id: string };
  /** Route path of the HTTP request relative to the FHIR base, for links and audit. */
  path: string;
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
