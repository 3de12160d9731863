import { randomUUID } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import type { Bundle, BundleEntry, OperationOutcome, Resource } from '@medplum/fhirtypes';
import type { AuditEntity } from '../fhir/pipeline/audit-record';
import { APP_CONFIG, AppConfig } from '../config/app.config';
import { FhirError } from '../common/fhir-error';
import { isShapeChecked } from '../common/json-shape';
import { parseFhirDateRange, plusInZoneHint } from '../common/fhir-date';
import { CapabilityStatementService } from '../fhir/capability/capability-statement.service';
import type { EntityManager } from 'typeorm';
import type { StorageSession } from '../fhir/storage/storage-session';
import { HistoryEntry, notWritable, ResourceRepository, StoredVersion, versionWrite, WriteResult } from '../fhir/storage/resource.repository';
import { ResourceMatcher } from '../fhir/storage/resource-matcher';
import { ResourceValidator } from '../fhir/validation/resource.validator';
import { SearchService } from '../fhir/search/search.service';
import { OperationRegistry } from '../fhir/operations/operation.registry';
import type { AccessAttributes } from '../fhir/storage/access-attributes';
import type { AccessContext } from '../fhir/pipeline/access-context';
import { ResourceTypeHandlers } from '../fhir/pipeline/resource-type-handler';
import type {
  CreateInteraction,
  DeleteInteraction,
  Interaction,
  InteractionResult,
  PatchInteraction,
  ReadInteraction,
  UpdateInteraction,
  VreadInteraction,
} from '../fhir/pipeline/interaction';
import { resolveConditionalReferences } from '../fhir/pipeline/conditional-references';
import { firstValue, parseQueryString } from '../fhir/pipeline/query-params';
import { applyResourcePatch } from '../fhir/pipeline/resource-patch';

const CHANGES = new Set(['update', 'patch', 'delete']);
const DEFAULT_HISTORY_COUNT = 50;
const MAX_HISTORY_COUNT = 1000;
/** The `version_id` column is a PostgreSQL integer; `_cursor` is a history `seq`, a bigint. */
const MAX_VERSION_ID = 2_147_483_647;
const MAX_SEQ = 9_223_372_036_854_775_807n;

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
    private readonly handlers: ResourceTypeHandlers,
  ) {}

  /** `session`: the interaction's unit of work (a transaction for writes), opened by the pipeline. */
  async execute(ctx: AccessContext, interaction: Interaction, session: StorageSession): Promise<InteractionResult> {
    const handler = this.handlers.get(interaction.resourceType);
    // A module may refuse changes of some of its type's ids (the server's own OperationDefinitions).
    if (CHANGES.has(interaction.kind)) {
      const refusal = handler?.refuseChange?.(interaction);
      if (refusal) throw refusal;
    }
    session.access = ctx;
    const tx = session.tx;
    switch (interaction.kind) {
      case 'capabilities':
        return { status: 200, resource: this.capabilities.get() };
      case 'create':
        return interaction.ifNoneExist !== undefined
          ? this.conditionalCreate(ctx, interaction, interaction.ifNoneExist, tx)
          : this.create(ctx, interaction, tx);
      case 'read': {
        // A module's handler may answer reads of its type (the audit trail's records); else storage.
        const answered = await handler?.read?.(ctx, interaction, tx);
        return answered ?? this.read(ctx, interaction, tx);
      }
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
      case 'search-compartment': {
        // A type whose module searches it itself (AuditEvent: the audit trail) is answered there;
        // undefined lets the search engine answer.
        const answered = await handler?.search?.(ctx, interaction, tx);
        return answered ?? this.search.search(ctx, interaction, tx);
      }
      case 'search-system':
        return this.search.search(ctx, interaction, tx);
      case 'operation':
        return this.operations.execute(ctx, interaction, session);
      case 'batch':
      case 'transaction':
        // Bundles are taken apart by the pipeline (BundleProcessor); their entries come here.
        throw FhirError.notSupported(`A ${interaction.kind} Bundle cannot be an entry of another Bundle`);
    }
  }

  private async create(ctx: AccessContext, i: CreateInteraction, tx: EntityManager): Promise<InteractionResult> {
    const received = this.validator.assertResourceBody(i.body, i.resourceType);
    const body = i.noConditionalReferences ? received : await resolveConditionalReferences(ctx, received, this.matcher, tx);
    // R4 http.html#create: a client-supplied id is ignored; the server assigns one (a transaction
    // assigns it up front so references to the entry's urn:uuid can be rewritten).
    const id = i.assignedId ?? randomUUID();
    const resource = { ...body, id } as Resource;
    // A copy of the parsed body with a server id: what the body's check passed, it passes.
    await this.validator.validateAsync(resource, { shapeChecked: isShapeChecked(body) });
    const result = await this.repository.write(ctx, versionWrite(ctx, 'create', 'POST', resource, id), tx);
    return { ...this.written(201, storedVersion(result)), writeDecision: result.decision };
  }

  /**
   * If-None-Exist (http.html#ccreate): 0 matches create, 1 match answers it with 200, more is 412.
   * The criteria are a search the client runs: they need its search right and match only what it
   * may see; the match's body is returned only when the client may read it.
   */
  private async conditionalCreate(ctx: AccessContext, i: CreateInteraction, criteria: string, tx: EntityManager): Promise<InteractionResult> {
    this.validator.assertResourceBody(i.body, i.resourceType);
    const ids = await this.matchForWrite(ctx, i.resourceType, criteria, tx, true);
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
    const ids = await this.matchForWrite(ctx, i.resourceType, criteria, tx, true);
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
    const ids = await this.matchForWrite(ctx, i.resourceType, criteria, tx, false);
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
    let writeDecision;
    for (const id of ids) {
      const deleted = await this.delete(ctx, i, id, tx);
      touched.push(...(deleted.touched ?? []));
      writeDecision ??= deleted.writeDecision;
    }
    return {
      status: 200,
      writeDecision,
      resource: outcome(`Deleted ${ids.length} ${i.resourceType} resource(s)`),
      touched,
    };
  }

  /**
   * Matches conditional criteria as a search of the client's: its search right, its visible rows.
   * A write that may create (`mayCreate`) takes its turn among the type's conditional creates when
   * nothing matched, so racing criteria of any wording store one resource (matchIdsForCreate).
   */
  private async matchForWrite(ctx: AccessContext, resourceType: string, criteria: string, tx: EntityManager, mayCreate: boolean): Promise<string[]> {
    const searchCtx = await ctx.lookup('search-type', resourceType, parseQueryString(criteria));
    return mayCreate ? this.matcher.matchIdsForCreate(searchCtx, resourceType, criteria, tx) : this.matcher.matchIds(searchCtx, resourceType, criteria, tx);
  }

  private async read(ctx: AccessContext, i: ReadInteraction, tx: EntityManager): Promise<InteractionResult> {
    const current = await this.repository.readCurrent(ctx, i.resourceType, i.id, tx);
    if (!current) throw FhirError.notFound(`${i.resourceType}/${i.id} is not known`);
    if (current.deleted) throw this.goneError(current);
    if (notModified(i, current.versionId, current.lastUpdated)) {
      return { status: 304, versionId: String(current.versionId), lastUpdated: current.lastUpdated };
    }
    return { status: 200, resource: current.resource, versionId: String(current.versionId), lastUpdated: current.lastUpdated, touched: [entityOf(current)], judged: judgedOn(current) };
  }

  private async vread(ctx: AccessContext, i: VreadInteraction, tx: EntityManager): Promise<InteractionResult> {
    // Version ids are a PostgreSQL integer: anything beyond it is no version of ours (400, not a
    // failing statement).
    const versionId = /^\d{1,10}$/.test(i.versionId) ? Number(i.versionId) : NaN;
    if (!Number.isInteger(versionId) || versionId < 1 || versionId > MAX_VERSION_ID) {
      throw FhirError.badRequest(`Version id '${i.versionId.slice(0, 40)}' is not an integer from 1 to ${MAX_VERSION_ID}`);
    }
    const version = await this.repository.readVersion(ctx, i.resourceType, i.id, versionId, tx);
    if (!version) throw FhirError.notFound(`${i.resourceType}/${i.id}/_history/${i.versionId} is not known`);
    if (version.deleted) throw this.goneError(version);
    if (notModified(i, version.versionId, version.lastUpdated)) {
      return { status: 304, versionId: String(version.versionId), lastUpdated: version.lastUpdated };
    }
    return { status: 200, resource: version.resource, versionId: String(version.versionId), lastUpdated: version.lastUpdated, touched: [entityOf(version)], judged: judgedOn(version) };
  }

  private async update(ctx: AccessContext, i: UpdateInteraction, id: string, tx: EntityManager): Promise<InteractionResult> {
    let resource = this.validator.assertResourceBody(i.body, i.resourceType);
    if (resource.id === undefined) {
      throw FhirError.badRequest('An update must carry the resource id in the body', [`${resource.resourceType}.id`], 'required');
    }
    if (resource.id !== id) {
      throw FhirError.badRequest(`The id in the body (${resource.id}) does not match the URL (${id})`, [
        `${resource.resourceType}.id`,
      ]);
    }
    if (!i.noConditionalReferences) resource = await resolveConditionalReferences(ctx, resource, this.matcher, tx);
    await this.validator.validateAsync(resource);
    const result = await this.repository.write(ctx, versionWrite(ctx, 'update', 'PUT', resource, id, parseIfMatch(i.ifMatch)), tx);
    return { ...this.written(result.created ? 201 : 200, storedVersion(result)), writeDecision: result.decision };
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
    const patched = applyResourcePatch(current.resource, i.body);
    if (patched.resourceType !== current.resourceType || patched.id !== current.id) {
      throw FhirError.badRequest('A patch may not change resourceType or id', [`${current.resourceType}.id`]);
    }
    // A patch may put a conditional reference in: resolved like one sent whole.
    const resource = await resolveConditionalReferences(ctx, patched, this.matcher, tx);
    await this.validator.validateAsync(resource);
    const result = await this.repository.write(ctx, versionWrite(ctx, 'update', 'PATCH', resource, current.id, expected), tx);
    return { ...this.written(200, storedVersion(result)), writeDecision: result.decision };
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
      writeDecision: result.decision,
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
    if (cursor !== undefined && (!/^\d{1,19}$/.test(cursor) || BigInt(cursor) > MAX_SEQ)) throw FhirError.badRequest(`Invalid _cursor '${cursor}'`, ['_cursor']);

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
      // FHIR JSON has no empty arrays (json.html).
      ...(page.length ? { entry: page.map((row) => this.historyEntry(row)) } : {}),
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


/**
 * Conditional read (RFC 9110 §13.2.2): If-None-Match decides when sent (`*` or any listed version
 * matches) and If-Modified-Since is then not looked at; otherwise If-Modified-Since at one-second
 * precision (HTTP dates have no fractions). An If-Modified-Since that is not a date is ignored
 * (§13.1.3). Decided here, not only by Express's freshness check on the way out, so batch entries
 * get it too and the audit record says 304.
 */
export function notModified(
  conditions: { ifNoneMatch?: string; ifModifiedSince?: string },
  versionId: number,
  lastUpdated: string,
): boolean {
  if (conditions.ifNoneMatch !== undefined) {
    if (conditions.ifNoneMatch.trim() === '*') return true;
    return conditions.ifNoneMatch.split(',').some((tag) => {
      const m = /^(?:W\/)?"?(\d{1,9})"?$/.exec(tag.trim());
      if (!m) throw FhirError.badRequest(`Malformed If-None-Match header: expected W/"<versionId>"`, ['If-None-Match']);
      return Number(m[1]) === versionId;
    });
  }
  if (conditions.ifModifiedSince === undefined) return false;
  const since = Date.parse(conditions.ifModifiedSince);
  if (Number.isNaN(since)) return false;
  return Math.floor(Date.parse(lastUpdated) / 1000) * 1000 <= since;
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
    custodianOrg: v.custodianOrg ?? null,
    authorOrg: v.authorOrg,
    compartments: v.compartments,
    securityLabels: v.securityLabels ?? [],
    lastUpdated: v.lastUpdated,
    // No clinical date: the version is judged on the instant it was recorded (docs/consent.md).
    clinicalPeriod: v.clinicalPeriod ?? `[${v.lastUpdated},${v.lastUpdated}]`,
  };
}
