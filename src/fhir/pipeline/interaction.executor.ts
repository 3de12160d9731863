import { randomUUID } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import type { Bundle, BundleEntry, OperationOutcome, Resource } from '@medplum/fhirtypes';
import type { AuditEntity } from '../../audit/audit-record';
import { AuditEventSearch } from '../../audit/audit-event.search';
import { APP_CONFIG, AppConfig } from '../../config/app.config';
import { FhirError } from '../../common/fhir-error';
import { parseFhirDateRange, plusInZoneHint } from '../../common/fhir-date';
import { CapabilityStatementService } from '../capability/capability-statement.service';
import type { EntityManager } from 'typeorm';
import { HistoryEntry, notWritable, ResourceRepository, StoredVersion, versionWrite, WriteResult } from '../storage/resource.repository';
import { lockCriteria, ResourceMatcher } from '../storage/resource-matcher';
import { ResourceValidator } from '../validation/resource.validator';
import { SearchService } from '../search/search.service';
import { OperationRegistry } from '../operations/operation.registry';
import type { AccessAttributes } from '../storage/access-attributes';
import type { AccessContext } from './access-context';
import type {
  CreateInteraction,
  DeleteInteraction,
  Interaction,
  InteractionResult,
  PatchInteraction,
  ReadInteraction,
  UpdateInteraction,
  VreadInteraction,
} from './interaction';
import { firstValue, parseQueryString } from './query-params';
import { applyResourcePatch } from './resource-patch';

const DEFAULT_HISTORY_COUNT = 50;
const MAX_HISTORY_COUNT = 1000;

/**
 * FHIR semantics of each interaction (http.html), given an AccessContext from the pipeline.
 * Knows nothing of HTTP: it reads an Interaction and returns an InteractionResult.
 */
@Injectable()
export class InteractionExecutor {
  constructor(
    private readonly repository: ResourceRepository,
    private readonly validator: ResourceValidator,
    private readonly capabilities: CapabilityStatementService,
    private readonly matcher: ResourceMatcher,
    private readonly search: SearchService,
    private readonly operations: OperationRegistry,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly auditTrail: AuditEventSearch,
  ) {}

  /** `tx`: the interaction's storage session (a transaction for writes), opened by the pipeline. */
  async execute(ctx: AccessContext, interaction: Interaction, tx: EntityManager): Promise<InteractionResult> {
    switch (interaction.kind) {
      case 'capabilities':
        return { status: 200, resource: this.capabilities.get() };
      case 'create':
        return interaction.ifNoneExist !== undefined
          ? this.conditionalCreate(ctx, interaction, interaction.ifNoneExist, tx)
          : this.create(ctx, interaction, tx);
      case 'read':
        // Auditors read the server's own trail (docs/audit.md); other AuditEvents are stored resources.
        if (interaction.resourceType === 'AuditEvent' && ctx.principal.role === 'auditor') {
          const stored = await this.auditTrail.read(interaction.id!, ctx.principal.scopes);
          if (stored) return stored;
        }
        return this.read(ctx, interaction, tx);
      case 'vread':
        return this.vread(ctx, interaction, tx);
      case 'update':
        return interaction.conditional !== undefined
          ? this.conditionalUpdate(ctx, interaction, interaction.conditional, tx)
          : this.update(ctx, interaction, interaction.id, tx);
      case 'patch':
        return this.patch(ctx, interaction, tx);
      case 'delete':
        return interaction.conditional !== undefined
          ? this.conditionalDelete(ctx, interaction, interaction.conditional, tx)
          : this.delete(ctx, interaction, interaction.id, tx);
      case 'history-instance':
        return this.history(ctx, interaction, tx, { resourceType: interaction.resourceType, id: interaction.id });
      case 'history-type':
      case 'history-system':
        return this.history(ctx, interaction, tx, { resourceType: interaction.resourceType });
      case 'search-type':
        // AuditEvent searches (auditors only, see SmartAuthorization) answer from the audit trail.
        if (interaction.resourceType === 'AuditEvent') return this.auditTrail.search(interaction, ctx.principal.scopes);
        return this.search.search(ctx, interaction, tx);
      case 'search-system':
      case 'search-compartment':
        return this.search.search(ctx, interaction, tx);
      case 'operation':
        return this.operations.execute(ctx, interaction, tx);
      case 'batch':
      case 'transaction':
        // Bundles are taken apart by the pipeline (BundleProcessor); their entries come here.
        throw FhirError.notSupported(`A ${interaction.kind} Bundle cannot be an entry of another Bundle`);
    }
  }

  private async create(ctx: AccessContext, i: CreateInteraction, tx: EntityManager): Promise<InteractionResult> {
    const body = this.validator.assertResourceBody(i.body, i.resourceType);
    // R4 http.html#create: a client-supplied id is ignored; the server assigns one (a transaction
    // assigns it up front so references to the entry's urn:uuid can be rewritten).
    const id = i.assignedId ?? randomUUID();
    const resource = { ...body, id } as Resource;
    this.validator.validate(resource);
    const result = await this.repository.write(ctx, versionWrite(ctx, 'create', 'POST', resource, id), tx);
    return this.written(201, storedVersion(result));
  }

  /**
   * If-None-Exist (http.html#ccreate): 0 matches create, 1 match answers it with 200, more is 412.
   * The criteria are a search the client runs: they need its search right and match only what it
   * may see; the match's body is returned only when the client may read it.
   */
  private async conditionalCreate(ctx: AccessContext, i: CreateInteraction, criteria: string, tx: EntityManager): Promise<InteractionResult> {
    this.validator.assertResourceBody(i.body, i.resourceType);
    const ids = await this.lockAndMatch(ctx, i.resourceType, criteria, tx);
    if (ids.length > 1) throw new FhirError(412, 'multiple-matches', `If-None-Exist criteria match ${ids.length} resources`);
    if (ids.length === 1) {
      const readable = await ctx.lookup('read', i.resourceType).catch(() => undefined);
      const existing = readable ? await this.repository.readCurrent(readable, i.resourceType, ids[0], tx) : undefined;
      if (!existing) {
        return {
          status: 200,
          resource: outcome(`A ${i.resourceType} matching the If-None-Exist criteria exists; nothing was created`),
        };
      }
      return { ...this.written(200, existing), location: undefined };
    }
    return this.create(ctx, i, tx);
  }

  /** Conditional update (http.html#cond-update): 0 matches create, 1 updates it, more is 412. */
  private async conditionalUpdate(ctx: AccessContext, i: UpdateInteraction, criteria: string, tx: EntityManager): Promise<InteractionResult> {
    const body = this.validator.assertResourceBody(i.body, i.resourceType);
    const ids = await this.lockAndMatch(ctx, i.resourceType, criteria, tx);
    if (ids.length > 1) throw new FhirError(412, 'multiple-matches', `Conditional update criteria match ${ids.length} resources`);
    const id = ids[0] ?? body.id ?? i.assignedId ?? randomUUID();
    if (body.id !== undefined && body.id !== id) {
      throw FhirError.badRequest(`The id in the body (${body.id}) is not the id of the matched resource`, [`${body.resourceType}.id`]);
    }
    return this.update(ctx, { ...i, body: { ...body, id } }, id, tx);
  }

  /**
   * Conditional delete (http.html#cdelete): single-match by default (several answer 412, as R4
   * permits); deleting several is the configured opt-in `FHIR_CONDITIONAL_DELETE_MAX`. Every match
   * is subject to the write rule: one the client may not change fails the whole delete with 403.
   */
  private async conditionalDelete(ctx: AccessContext, i: DeleteInteraction, criteria: string, tx: EntityManager): Promise<InteractionResult> {
    const ids = await this.lockAndMatch(ctx, i.resourceType, criteria, tx);
    const max = Math.max(this.config.conditionalDeleteMax, 1);
    if (ids.length > max) {
      throw new FhirError(
        412,
        'multiple-matches',
        max === 1
          ? `Conditional delete criteria match ${ids.length > 1000 ? 'more than 1000' : ids.length} resources; this server deletes only a single match`
          : `Conditional delete criteria match more than ${max} resources (FHIR_CONDITIONAL_DELETE_MAX)`,
      );
    }
    const touched = [];
    for (const id of ids) touched.push(...((await this.delete(ctx, i, id, tx)).touched ?? []));
    return {
      status: 200,
      resource: outcome(`Deleted ${ids.length} ${i.resourceType} resource(s)`),
      touched,
    };
  }

  /** Matches conditional criteria as a search of the client's: its search right, its visible rows. */
  private async lockAndMatch(ctx: AccessContext, resourceType: string, criteria: string, tx: EntityManager): Promise<string[]> {
    const searchCtx = await ctx.lookup('search-type', resourceType, parseQueryString(criteria));
    await lockCriteria(tx, resourceType, criteria);
    return this.matcher.matchIds(searchCtx, resourceType, criteria, tx);
  }

  private async read(ctx: AccessContext, i: ReadInteraction, tx: EntityManager): Promise<InteractionResult> {
    const current = await this.repository.readCurrent(ctx, i.resourceType, i.id, tx);
    if (!current) throw FhirError.notFound(`${i.resourceType}/${i.id} is not known`);
    if (current.deleted) throw this.goneError(current);
    if (i.ifNoneMatch !== undefined && parseIfMatch(i.ifNoneMatch) === current.versionId) {
      return { status: 304, versionId: String(current.versionId), lastUpdated: current.lastUpdated };
    }
    return { status: 200, resource: current.resource, versionId: String(current.versionId), lastUpdated: current.lastUpdated, touched: [entityOf(current)], judged: judgedOn(current) };
  }

  private async vread(ctx: AccessContext, i: VreadInteraction, tx: EntityManager): Promise<InteractionResult> {
    const versionId = Number(i.versionId);
    if (!Number.isInteger(versionId) || versionId < 1) {
      throw FhirError.badRequest(`Version id '${i.versionId}' is not a positive integer`);
    }
    const version = await this.repository.readVersion(ctx, i.resourceType, i.id, versionId, tx);
    if (!version) throw FhirError.notFound(`${i.resourceType}/${i.id}/_history/${i.versionId} is not known`);
    if (version.deleted) throw this.goneError(version);
    return { status: 200, resource: version.resource, versionId: String(version.versionId), lastUpdated: version.lastUpdated, touched: [entityOf(version)], judged: judgedOn(version) };
  }

  private async update(ctx: AccessContext, i: UpdateInteraction, id: string, tx: EntityManager): Promise<InteractionResult> {
    const resource = this.validator.assertResourceBody(i.body, i.resourceType);
    if (resource.id === undefined) {
      throw FhirError.badRequest('An update must carry the resource id in the body', [`${resource.resourceType}.id`], 'required');
    }
    if (resource.id !== id) {
      throw FhirError.badRequest(`The id in the body (${resource.id}) does not match the URL (${id})`, [
        `${resource.resourceType}.id`,
      ]);
    }
    this.validator.validate(resource);
    const result = await this.repository.write(ctx, versionWrite(ctx, 'update', 'PUT', resource, resource.id, parseIfMatch(i.ifMatch)), tx);
    return this.written(result.created ? 201 : 200, storedVersion(result));
  }

  /**
   * Patch = read, apply, validate, write with the read version as precondition (or the client's
   * If-Match). A concurrent writer in between makes the write fail with 412 rather than be lost.
   */
  private async patch(ctx: AccessContext, i: PatchInteraction, tx: EntityManager): Promise<InteractionResult> {
    // Not there, hidden, or not the client's to change: one answer (the write rule).
    const current = await this.repository.readCurrent(ctx, i.resourceType, i.id, tx);
    if (!current) throw notWritable(i.resourceType, i.id);
    if (current.deleted) throw this.goneError(current);
    const expected = parseIfMatch(i.ifMatch) ?? current.versionId;
    if (expected !== current.versionId) {
      throw FhirError.preconditionFailed(`If-Match version ${expected} does not match the current version of ${i.resourceType}/${i.id}`);
    }
    if (!current.resource) throw new Error(`${current.resourceType}/${current.id} has no stored content`);
    const resource = applyResourcePatch(current.resource, i.body);
    if (resource.resourceType !== current.resourceType || resource.id !== current.id) {
      throw FhirError.badRequest('A patch may not change resourceType or id', [`${current.resourceType}.id`]);
    }
    this.validator.validate(resource);
    const result = await this.repository.write(ctx, versionWrite(ctx, 'update', 'PATCH', resource, current.id, expected), tx);
    return this.written(200, storedVersion(result));
  }

  private async delete(ctx: AccessContext, i: DeleteInteraction, id: string, tx: EntityManager): Promise<InteractionResult> {
    const result = await this.repository.write(ctx, {
      mode: 'delete',
      method: 'DELETE',
      resourceType: i.resourceType,
      id,
      ifMatch: parseIfMatch(i.ifMatch),
      authorOrg: ctx.principal.organization,
    }, tx);
    const headers: Record<string, string> = {};
    if (result.version) headers.ETag = `W/"${result.version.versionId}"`;
    return {
      status: 200,
      headers,
      touched: result.version ? [entityOf(result.version)] : [],
      resource: {
        resourceType: 'OperationOutcome',
        issue: [
          {
            severity: 'information',
            code: 'informational',
            diagnostics: result.changed ? `Deleted ${i.resourceType}/${id}` : `${i.resourceType}/${id} was not present`,
          },
        ],
      },
    };
  }

  private async history(
    ctx: AccessContext,
    i: Interaction,
    tx: EntityManager,
    target: { resourceType?: string; id?: string },
  ): Promise<InteractionResult> {
    const count = parseCount(firstValue(i.query, '_count'), DEFAULT_HISTORY_COUNT, MAX_HISTORY_COUNT);
    const sinceRaw = firstValue(i.query, '_since');
    const since = sinceRaw !== undefined ? parseInstantParam('_since', sinceRaw).start : undefined;
    const atRaw = firstValue(i.query, '_at');
    const at = atRaw !== undefined ? parseInstantParam('_at', atRaw) : undefined;
    const cursor = firstValue(i.query, '_cursor');
    if (cursor !== undefined && !/^\d{1,19}$/.test(cursor)) throw FhirError.badRequest(`Invalid _cursor '${cursor}'`, ['_cursor']);

    if (target.resourceType && target.id) {
      const exists = await this.repository.readCurrent(ctx, target.resourceType, target.id, tx);
      if (!exists) throw FhirError.notFound(`${target.resourceType}/${target.id} is not known`);
    }
    const rows = await this.repository.history(ctx, {
      resourceType: target.resourceType,
      id: target.id,
      since,
      at,
      count,
      beforeSeq: cursor,
    }, tx);
    const page = rows.slice(0, count);
    const base = this.config.fhirBaseUrl;
    const selfQuery = new URLSearchParams();
    for (const [k, v] of Object.entries(i.query)) {
      for (const one of Array.isArray(v) ? v : v !== undefined ? [v] : []) selfQuery.append(k, one);
    }
    const link: Bundle['link'] = [{ relation: 'self', url: `${base}${i.path}${selfQuery.size ? `?${selfQuery}` : ''}` }];
    if (rows.length > count) {
      const next = new URLSearchParams(selfQuery);
      next.set('_cursor', page[page.length - 1].seq);
      next.set('_count', String(count));
      link.push({ relation: 'next', url: `${base}${i.path}?${next}` });
    }
    const bundle: Bundle = {
      resourceType: 'Bundle',
      type: 'history',
      ...(target.resourceType && target.id && !cursor && !since && !at
        ? { total: await this.repository.countVersions(ctx, target.resourceType, target.id, tx) }
        : {}),
      link,
      entry: page.map((row) => this.historyEntry(row)),
    };
    return { status: 200, resource: bundle, touched: page.map(entityOf) };
  }

  private historyEntry(row: HistoryEntry): BundleEntry {
    const url = `${row.resourceType}/${row.id}`;
    return {
      fullUrl: `${this.config.fhirBaseUrl}/${url}`,
      ...(row.deleted ? {} : { resource: row.resource }),
      request: { method: row.method as 'POST' | 'PUT' | 'DELETE' | 'PATCH', url: row.method === 'POST' ? row.resourceType : url },
      response: {
        status: row.deleted ? '204 No Content' : row.versionId === 1 ? '201 Created' : '200 OK',
        etag: `W/"${row.versionId}"`,
        lastModified: row.lastUpdated,
      },
    };
  }

  private written(status: number, version: StoredVersion): InteractionResult {
    return {
      status,
      touched: [entityOf(version)],
      resource: version.resource,
      versionId: String(version.versionId),
      lastUpdated: version.lastUpdated,
      location: `${this.config.fhirBaseUrl}/${version.resourceType}/${version.id}/_history/${version.versionId}`,
    };
  }

  private goneError(version: StoredVersion): FhirError {
    return new FhirError(410, 'deleted', `${version.resourceType}/${version.id} was deleted`, undefined, {
      ETag: `W/"${version.versionId}"`,
      'Last-Modified': new Date(version.lastUpdated).toUTCString(),
    });
  }
}

/** The version a create or update stored (only a delete of something already gone stores none). */
function storedVersion(result: WriteResult): StoredVersion {
  if (!result.version) throw new Error('A create or update stored no version');
  return result.version;
}

function entityOf(v: StoredVersion): AuditEntity {
  return { reference: `${v.resourceType}/${v.id}`, versionId: String(v.versionId), patients: v.compartments };
}

function outcome(diagnostics: string): OperationOutcome {
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'information', code: 'informational', diagnostics }] };
}


/** `If-Match: W/"3"` (or `"3"`, or `3`) to 3; anything else is a malformed precondition. */
export function parseIfMatch(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const m = /^(?:W\/)?"?(\d{1,9})"?$/.exec(value.trim());
  if (!m) throw FhirError.badRequest(`Malformed If-Match header '${value}': expected W/"<versionId>"`, ['If-Match']);
  return Number(m[1]);
}

export function parseCount(raw: string | undefined, def: number, max: number): number {
  if (raw === undefined) return def;
  if (!/^\d{1,6}$/.test(raw)) throw FhirError.badRequest(`_count must be a non-negative integer, got '${raw}'`, ['_count']);
  return Math.min(Math.max(Number(raw), 1), max);
}

function parseInstantParam(name: string, raw: string): { start: string; end: string } {
  const range = parseFhirDateRange(raw);
  if (!range) throw FhirError.badRequest(`${name} must be a FHIR date, dateTime or instant, got '${raw}'${plusInZoneHint(raw)}`, [name]);
  return range;
}

/** The attributes a read was judged on, when the statement selected them. */
function judgedOn(v: StoredVersion): AccessAttributes | undefined {
  if (v.authorOrg === undefined) return undefined;
  return {
    resourceType: v.resourceType,
    id: v.id,
    authorOrg: v.authorOrg,
    compartments: v.compartments,
    securityLabels: v.securityLabels ?? [],
    lastUpdated: v.lastUpdated,
    // No clinical date: the version is judged on the instant it was recorded (docs/consent.md).
    clinicalPeriod: v.clinicalPeriod ?? `[${v.lastUpdated},${v.lastUpdated}]`,
  };
}
