import { randomUUID } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import type { Bundle, BundleEntry, Resource } from '@medplum/fhirtypes';
import { APP_CONFIG, AppConfig } from '../../config/app.config';
import { FhirError } from '../../common/fhir-error';
import { parseFhirDateRange } from '../../common/fhir-date';
import { CapabilityStatementService } from '../capability/capability-statement.service';
import { HistoryEntry, ResourceRepository, StoredVersion } from '../storage/resource.repository';
import { patientCompartmentsOf, securityLabelsOf } from '../storage/patient-compartment';
import { ResourceValidator } from '../validation/resource.validator';
import type { AccessContext } from './access-context';
import type { Interaction, InteractionResult } from './interaction';
import { firstValue } from './query-params';
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
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async execute(ctx: AccessContext, interaction: Interaction): Promise<InteractionResult> {
    switch (interaction.kind) {
      case 'capabilities':
        return { status: 200, resource: this.capabilities.get() };
      case 'create':
        return this.create(ctx, interaction);
      case 'read':
        return this.read(ctx, interaction);
      case 'vread':
        return this.vread(ctx, interaction);
      case 'update':
        return this.update(ctx, interaction);
      case 'patch':
        return this.patch(ctx, interaction);
      case 'delete':
        return this.delete(ctx, interaction);
      case 'history-instance':
      case 'history-type':
      case 'history-system':
        return this.history(ctx, interaction);
      default:
        throw FhirError.notSupported(`The ${interaction.kind} interaction is not supported yet`, 501);
    }
  }

  private async create(ctx: AccessContext, i: Interaction): Promise<InteractionResult> {
    const body = this.validator.assertResourceBody(i.body, i.resourceType);
    // R4 http.html#create: a client-supplied id is ignored; the server assigns one.
    const resource = { ...body, id: randomUUID() } as Resource;
    this.validator.validate(resource);
    const result = await this.repository.write(ctx, {
      mode: 'create',
      method: 'POST',
      resourceType: resource.resourceType,
      id: resource.id!,
      resource,
      authorOrg: ctx.principal.organization,
      compartments: patientCompartmentsOf(resource),
      securityLabels: securityLabelsOf(resource),
    });
    return this.written(201, result.version!);
  }

  private async read(ctx: AccessContext, i: Interaction): Promise<InteractionResult> {
    const current = await this.repository.readCurrent(ctx, i.resourceType!, i.id!);
    if (!current) throw FhirError.notFound(`${i.resourceType}/${i.id} is not known`);
    if (current.deleted) throw this.goneError(current);
    return { status: 200, resource: current.resource, versionId: String(current.versionId), lastUpdated: current.lastUpdated };
  }

  private async vread(ctx: AccessContext, i: Interaction): Promise<InteractionResult> {
    const versionId = Number(i.versionId);
    if (!Number.isInteger(versionId) || versionId < 1) {
      throw FhirError.badRequest(`Version id '${i.versionId}' is not a positive integer`);
    }
    const version = await this.repository.readVersion(ctx, i.resourceType!, i.id!, versionId);
    if (!version) throw FhirError.notFound(`${i.resourceType}/${i.id}/_history/${i.versionId} is not known`);
    if (version.deleted) throw this.goneError(version);
    return { status: 200, resource: version.resource, versionId: String(version.versionId), lastUpdated: version.lastUpdated };
  }

  private async update(ctx: AccessContext, i: Interaction): Promise<InteractionResult> {
    const resource = this.validator.assertResourceBody(i.body, i.resourceType);
    if (resource.id === undefined) {
      throw FhirError.badRequest('An update must carry the resource id in the body', [`${resource.resourceType}.id`], 'required');
    }
    if (resource.id !== i.id) {
      throw FhirError.badRequest(`The id in the body (${resource.id}) does not match the URL (${i.id})`, [
        `${resource.resourceType}.id`,
      ]);
    }
    this.validator.validate(resource);
    const result = await this.repository.write(ctx, {
      mode: 'update',
      method: 'PUT',
      resourceType: resource.resourceType,
      id: resource.id,
      resource,
      ifMatch: parseIfMatch(i.ifMatch),
      authorOrg: ctx.principal.organization,
      compartments: patientCompartmentsOf(resource),
      securityLabels: securityLabelsOf(resource),
    });
    return this.written(result.created ? 201 : 200, result.version!);
  }

  /**
   * Patch = read, apply, validate, write with the read version as precondition (or the client's
   * If-Match). A concurrent writer in between makes the write fail with 412 rather than be lost.
   */
  private async patch(ctx: AccessContext, i: Interaction): Promise<InteractionResult> {
    const current = await this.repository.readCurrent(ctx, i.resourceType!, i.id!);
    if (!current) throw FhirError.notFound(`${i.resourceType}/${i.id} is not known`);
    if (current.deleted) throw this.goneError(current);
    const expected = parseIfMatch(i.ifMatch) ?? current.versionId;
    if (expected !== current.versionId) {
      throw FhirError.preconditionFailed(`If-Match version ${expected} does not match the current version of ${i.resourceType}/${i.id}`);
    }
    const resource = applyResourcePatch(current.resource!, i.body);
    if (resource.resourceType !== current.resourceType || resource.id !== current.id) {
      throw FhirError.badRequest('A patch may not change resourceType or id', [`${current.resourceType}.id`]);
    }
    this.validator.validate(resource);
    const result = await this.repository.write(ctx, {
      mode: 'update',
      method: 'PATCH',
      resourceType: resource.resourceType,
      id: resource.id!,
      resource,
      ifMatch: expected,
      authorOrg: ctx.principal.organization,
      compartments: patientCompartmentsOf(resource),
      securityLabels: securityLabelsOf(resource),
    });
    return this.written(200, result.version!);
  }

  private async delete(ctx: AccessContext, i: Interaction): Promise<InteractionResult> {
    const result = await this.repository.write(ctx, {
      mode: 'delete',
      method: 'DELETE',
      resourceType: i.resourceType!,
      id: i.id!,
      ifMatch: parseIfMatch(i.ifMatch),
      authorOrg: ctx.principal.organization,
    });
    const headers: Record<string, string> = {};
    if (result.version) headers.ETag = `W/"${result.version.versionId}"`;
    return {
      status: 200,
      headers,
      resource: {
        resourceType: 'OperationOutcome',
        issue: [
          {
            severity: 'information',
            code: 'informational',
            diagnostics: result.changed ? `Deleted ${i.resourceType}/${i.id}` : `${i.resourceType}/${i.id} was not present`,
          },
        ],
      },
    };
  }

  private async history(ctx: AccessContext, i: Interaction): Promise<InteractionResult> {
    const count = parseCount(firstValue(i.query, '_count'), DEFAULT_HISTORY_COUNT, MAX_HISTORY_COUNT);
    const sinceRaw = firstValue(i.query, '_since');
    const since = sinceRaw !== undefined ? parseInstantParam('_since', sinceRaw).start : undefined;
    const atRaw = firstValue(i.query, '_at');
    const at = atRaw !== undefined ? parseInstantParam('_at', atRaw) : undefined;
    const cursor = firstValue(i.query, '_cursor');
    if (cursor !== undefined && !/^\d{1,19}$/.test(cursor)) throw FhirError.badRequest(`Invalid _cursor '${cursor}'`, ['_cursor']);

    if (i.kind === 'history-instance') {
      const exists = await this.repository.readCurrent(ctx, i.resourceType!, i.id!);
      if (!exists) throw FhirError.notFound(`${i.resourceType}/${i.id} is not known`);
    }
    const rows = await this.repository.history(ctx, {
      resourceType: i.resourceType,
      id: i.kind === 'history-instance' ? i.id : undefined,
      since,
      at,
      count,
      beforeSeq: cursor,
    });
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
      ...(i.kind === 'history-instance' && !cursor && !since && !at
        ? { total: await this.repository.countVersions(i.resourceType!, i.id!) }
        : {}),
      link,
      entry: page.map((row) => this.historyEntry(row)),
    };
    return { status: 200, resource: bundle };
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
  if (!range) throw FhirError.badRequest(`${name} must be a FHIR date, dateTime or instant, got '${raw}'`, [name]);
  return range;
}
