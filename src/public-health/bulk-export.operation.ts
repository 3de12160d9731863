import { randomUUID } from 'node:crypto';
import { Inject, Injectable, OnModuleInit } from '@nestjs/common';
import type { Group, OperationDefinition } from '@medplum/fhirtypes';
import { FhirError } from '../common/fhir-error';
import { APP_CONFIG, AppConfig } from '../config/app.config';
import { FhirDefinitions } from '../fhir/definitions/fhir-definitions';
import { FhirOperation } from '../fhir/operations/fhir-operation';
import { shippedOperationDefinition } from '../fhir/operations/operation-definitions';
import type { OperationInput } from '../fhir/operations/operation-parameters';
import { OperationRegistry } from '../fhir/operations/operation.registry';
import type { AccessContext } from '../fhir/pipeline/access-context';
import type { InteractionResult, OperationInteraction, QueryParams } from '../fhir/pipeline/interaction';
import type { Principal } from '../fhir/pipeline/principal';
import { parseQueryString } from '../fhir/pipeline/query-params';
import { parseSearchRequest } from '../fhir/search/search-request';
import { ResourceRepository } from '../fhir/storage/resource.repository';
import type { StorageSession } from '../fhir/storage/storage-session';
import { JobQueue } from '../jobs/job-queue';
import { BULK_EXPORT_QUEUE, bulkExportStatusUrl } from './bulk-export.paths';
import { BulkExportParams, BulkExportRepository } from './bulk-export.repository';

/** `_outputFormat` values the Bulk Data IG says a server must accept for NDJSON. */
const NDJSON_FORMATS = new Set(['application/fhir+ndjson', 'application/ndjson', 'ndjson']);
/** Search parameters that shape or page a result: the export pages itself, so a `_typeFilter` may not carry them. */
const NOT_FILTERS = new Set(['_count', '_cursor', '_sort', '_total', '_summary', '_elements', '_include', '_revinclude', '_include:iterate', '_revinclude:iterate', '_contained', '_containedType', '_format', '_pretty']);
/** Types a de-identified export under the PUBHLTH view leaves out (no type rule bounds them there). */
const AGENCY_VIEW_EXCLUDED = new Set(['AuditEvent']);
/** Members of one Group an export follows (each is one compartment search per type). */
const MAX_GROUP_MEMBERS = 10_000;
const PATIENT_REF = /^Patient\/([A-Za-z0-9\-.]{1,64})$/;

/**
 * Bulk Data Access 2.0 kick-off (`$export` at system, Patient and Group level; docs/public-health.md).
 * Checks the request (Prefer: respond-async, Accept: application/fhir+json, the parameters against
 * the served OperationDefinition), resolves which types the requester may export, stores the
 * export and enqueues its job in the kick-off's transaction (the outbox: an accepted export is
 * never lost), and answers 202 with `Content-Location` = the status URL. The job runs later under
 * the requester's own access, re-created from the stored principal (`SystemAccess.mintAs`).
 *
 * Roles: hospitals (their own view: scopes, own data, consent for their purpose) and public-health
 * agencies registered with clinical access (purpose PUBHLTH: consent decides). Admins and auditors
 * may not: neither role reads patient data.
 */
@Injectable()
abstract class BulkExportKickOff extends FhirOperation implements OnModuleInit {
  readonly name = 'export';
  readonly affectsState = false;
  readonly roles = ['hospital', 'public-health'] as const;
  override readonly async = true;
  override readonly auditAction = 'R' as const;
  protected abstract readonly level: BulkExportParams['level'];

  constructor(
    private readonly operations: OperationRegistry,
    private readonly repository: ResourceRepository,
    private readonly exports: BulkExportRepository,
    private readonly jobs: JobQueue,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    super();
  }

  onModuleInit(): void {
    this.operations.register(this);
  }

  async execute(ctx: AccessContext, i: OperationInteraction, session: StorageSession, input: OperationInput): Promise<InteractionResult> {
    if (!i.preferAsync) throw FhirError.badRequest('$export runs asynchronously: send the header Prefer: respond-async', ['Prefer']);
    if (!acceptsFhirJson(i.accept)) throw FhirError.badRequest('$export answers its kick-off in FHIR JSON: send the header Accept: application/fhir+json', ['Accept']);
    const format = input.text('_outputFormat');
    if (format !== undefined && !NDJSON_FORMATS.has(format)) {
      throw FhirError.badRequest(`_outputFormat '${format.slice(0, 64)}' is not supported: this server writes application/fhir+ndjson`, ['_outputFormat']);
    }
    const deidentified = input.text('deidentified') === 'true';
    const principal = ctx.principal;
    if (principal.kind !== 'client' || !principal.clientId) throw FhirError.unauthorized('A valid bearer token is required');
    // Break-the-glass opens one patient's record in an emergency, never a bulk copy.
    if (principal.purposeOfUse === 'ETREAT') throw FhirError.forbidden('$export may not be run with break-the-glass (purpose ETREAT)');
    // Without clinical access an agency gets only the de-identified export, under the PUBHLTH consent view.
    const agencyView = principal.role === 'public-health' && !principal.clinicalAccess;
    if (agencyView && !deidentified) {
      throw FhirError.forbidden('An identified export needs a public-health client registered with clinical access; ask for deidentified=true');
    }

    const types = this.types(ctx, input, agencyView);
    const typeFilters = typeFiltersOf(input, types, agencyView);
    const since = input.text('_since');
    const params: BulkExportParams = { level: this.level, types, typeFilters, ...(since ? { since } : {}), ...(deidentified ? { deidentified } : {}) };
    if (this.level === 'group') {
      // The Group is read as the client's own read would be (an agency's view has no per-type rights: consent decides).
      if (!agencyView && !ctx.mayRead('Group')) throw FhirError.forbidden('This client may not read Group resources');
      Object.assign(params, await this.group(ctx, i.id!, session));
    }

    const { tx } = session;
    const active = await this.exports.activeCount(tx, principal.clientId);
    if (active >= this.config.bulkExport.maxPerClient) {
      throw new FhirError(429, 'throttled', `This client has ${active} exports accepted or running (at most ${this.config.bulkExport.maxPerClient}); retry when one has finished`, undefined, { 'Retry-After': '60' });
    }
    const id = randomUUID();
    await this.exports.insert(tx, { id, clientId: principal.clientId, principal: storedPrincipal(principal), request: requestUrl(this.config.fhirBaseUrl, i), params });
    await this.jobs.enqueue(tx, BULK_EXPORT_QUEUE, { exportId: id });
    return {
      status: 202,
      headers: { 'Content-Location': bulkExportStatusUrl(this.config.publicBaseUrl, id) },
      resource: { resourceType: 'OperationOutcome', issue: [{ severity: 'information', code: 'informational', diagnostics: `Export ${id} accepted` }] },
      touched: [],
    };
  }

  /** The level's types (every type; the Patient compartment's), narrowed by `_type`, each one the requester may search. */
  private types(ctx: AccessContext, input: OperationInput, agencyView: boolean): string[] {
    const defs = FhirDefinitions.get();
    const all = (this.level === 'system' ? [...defs.storableTypes] : ['Patient', ...defs.patientCompartmentTypes()]).filter(
      // The PUBHLTH view is consent only: records of access stay with auditors.
      (t) => !agencyView || !AGENCY_VIEW_EXCLUDED.has(t),
    );
    // The agency's own grants read nothing; the PUBHLTH view decides per row.
    const mayRead = (t: string): boolean => agencyView || ctx.mayRead(t);
    const asked = [...new Set(input.texts('_type').flatMap((v) => v.split(',')).map((t) => t.trim()).filter(Boolean))];
    if (!asked.length) return all.filter(mayRead);
    for (const t of asked) {
      if (!all.includes(t)) {
        throw FhirError.badRequest(`'${t.slice(0, 64)}' in _type is not ${this.level === 'system' ? 'a resource type' : 'a type of the Patient compartment'}`, ['_type']);
      }
    }
    const refused = asked.filter((t) => !mayRead(t));
    if (refused.length) throw new FhirError(403, 'forbidden', `This client may not search ${refused.join(', ')} (named in _type)`, ['_type']);
    return asked;
  }

  /** The Group's Patient members as of the kick-off; a Group the requester may not read is one that does not exist. */
  private async group(ctx: AccessContext, id: string, { tx }: StorageSession): Promise<Pick<BulkExportParams, 'groupId' | 'members'>> {
    const stored = await this.repository.readCurrent(ctx, 'Group', id, tx);
    if (!stored || stored.deleted || !stored.resource) throw FhirError.notFound(`Group/${id} is not known`);
    const members = new Set<string>();
    for (const m of (stored.resource as Group).member ?? []) {
      if (m.inactive) continue;
      const match = PATIENT_REF.exec(m.entity?.reference ?? '');
      if (match) members.add(match[1]);
    }
    if (members.size > MAX_GROUP_MEMBERS) {
      throw new FhirError(422, 'too-costly', `Group/${id} has ${members.size} Patient members; an export follows at most ${MAX_GROUP_MEMBERS}`);
    }
    return { groupId: id, members: [...members].sort() };
  }
}

@Injectable()
export class SystemExportOperation extends BulkExportKickOff {
  readonly definition: OperationDefinition = shippedOperationDefinition('export');
  readonly levels = ['system'] as const;
  protected readonly level = 'system' as const;
}

@Injectable()
export class PatientExportOperation extends BulkExportKickOff {
  readonly definition: OperationDefinition = shippedOperationDefinition('patient-export');
  readonly levels = ['type'] as const;
  override readonly resourceTypes = ['Patient'];
  protected readonly level = 'patient' as const;
}

@Injectable()
export class GroupExportOperation extends BulkExportKickOff {
  readonly definition: OperationDefinition = shippedOperationDefinition('group-export');
  readonly levels = ['instance'] as const;
  override readonly resourceTypes = ['Group'];
  protected readonly level = 'group' as const;
}

/** `Accept` names application/fhir+json (parameters such as `;q=` or `;fhirVersion=` allowed). */
function acceptsFhirJson(accept: string | undefined): boolean {
  return !!accept && accept.split(',').some((t) => t.split(';')[0].trim().toLowerCase() === 'application/fhir+json');
}

/**
 * `_typeFilter` values (`Type?query`, several per value only when comma-joined is not used: each
 * occurrence is one query), checked now with the search parser so a bad one is a 400 at kick-off,
 * not a failed export later.
 */
function typeFiltersOf(input: OperationInput, types: string[], agencyView: boolean): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const text of input.texts('_typeFilter')) {
    const q = text.indexOf('?');
    const type = q > 0 ? text.slice(0, q) : '';
    if (!type || q === text.length - 1) throw FhirError.badRequest(`_typeFilter '${text.slice(0, 64)}' must be [type]?[search parameters]`, ['_typeFilter']);
    if (!types.includes(type)) throw FhirError.badRequest(`_typeFilter names ${type.slice(0, 64)}, which this export does not include`, ['_typeFilter']);
    const query: QueryParams = parseQueryString(text.slice(q + 1));
    for (const name of Object.keys(query)) {
      if (NOT_FILTERS.has(name)) throw FhirError.badRequest(`_typeFilter may not use ${name.slice(0, 64)}: the export pages and shapes its own output`, ['_typeFilter']);
      // The agency's view has no per-type search rights to bound a chain or _has into other types.
      if (agencyView && (name.startsWith('_has') || name.split(':')[0].includes('.'))) {
        throw FhirError.badRequest(`_typeFilter of a de-identified export may not chain or use _has (${name.slice(0, 64)})`, ['_typeFilter']);
      }
    }
    try {
      parseSearchRequest([type], query, { strict: true });
    } catch (err) {
      if (err instanceof FhirError) throw FhirError.badRequest(`_typeFilter for ${type}: ${err.issues[0]?.diagnostics ?? 'not a valid search'}`, ['_typeFilter']);
      throw err;
    }
    out[type] = [...(out[type] ?? []), text.slice(q + 1)];
  }
  return out;
}

/** What the job needs to act as the client again; never the break-the-glass reason or the token. */
function storedPrincipal(p: Principal): Principal {
  return { kind: 'client', clientId: p.clientId, organization: p.organization, role: p.role, scopes: [...p.scopes], purposeOfUse: p.purposeOfUse, clinicalAccess: p.clinicalAccess };
}

/** The kick-off request as the manifest's `request` names it. */
function requestUrl(base: string, i: OperationInteraction): string {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(i.query)) for (const one of Array.isArray(v) ? v : v !== undefined ? [v] : []) query.append(k, one);
  return `${base}${i.path}${query.size ? `?${query}` : ''}`;
}
