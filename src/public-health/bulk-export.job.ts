import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Inject, Injectable, Logger, OnModuleInit } from '@nestjs/common';
import type { Bundle, Resource } from '@medplum/fhirtypes';
import { ClientRegistrationRepository } from '../auth/client-registration.repository';
import { FhirError } from '../common/fhir-error';
import { APP_CONFIG, AppConfig } from '../config/app.config';
import type { AccessContext } from '../fhir/pipeline/access-context';
import { SystemAccess } from '../fhir/pipeline/system-access';
import { buildInteraction, Interaction, QueryParams } from '../fhir/pipeline/interaction';
import type { Principal } from '../fhir/pipeline/principal';
import { parseQueryString } from '../fhir/pipeline/query-params';
import { SearchService } from '../fhir/search/search.service';
import { StorageSessions } from '../fhir/storage/storage-session';
import { JobQueue, QueuedJob } from '../jobs/job-queue';
import { deidentify, referencesOf } from './bulk-export.deidentify';
import { BULK_EXPORT_EXPIRY_QUEUE, BULK_EXPORT_QUEUE } from './bulk-export.paths';
import { BulkExportFile, BulkExportRepository, BulkExportRow } from './bulk-export.repository';

/** Attempts after the first: a crash or an outage mid-export resumes at the type it was writing. */
const RETRY_LIMIT = 3;

/** The export stopped on purpose (cancelled, or the quota ran out): not an error to retry. */
class ExportStopped extends Error {}

/**
 * The export job (Bulk Data `$export`, docs/public-health.md), on the outbox queue. It re-creates
 * the requester's AccessContext from the stored principal (`SystemAccess.mintAs`: the client's
 * current registration, scopes, role and consent, audited as `on-behalf-of:bulk-export`), then
 * writes one NDJSON file per type by keyset-paged searches through the search service — the same
 * SQL, predicate and matches as the client's own search — page by page into a write stream, so
 * memory holds one page whatever the size. Searches are bounded by the export's transaction time
 * (`_lastUpdated` at or before it) and by `_since` and `_typeFilter`. At-least-once: a retried job
 * skips the types already recorded and rewrites the current type's file from the start.
 */
@Injectable()
export class BulkExportJob implements OnModuleInit {
  private readonly logger = new Logger('BulkExport');

  constructor(
    private readonly jobs: JobQueue,
    private readonly exports: BulkExportRepository,
    private readonly system: SystemAccess,
    private readonly search: SearchService,
    private readonly sessions: StorageSessions,
    private readonly clients: ClientRegistrationRepository,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  onModuleInit(): void {
    // An export may run for hours; a worker whose heartbeat stops for a minute is taken as dead and the job resumes elsewhere.
    this.jobs.define(BULK_EXPORT_QUEUE, { retryLimit: RETRY_LIMIT, retryDelaySeconds: 5, retryBackoff: true, expireInSeconds: 12 * 3600, heartbeatSeconds: 60 });
    this.jobs.define(BULK_EXPORT_EXPIRY_QUEUE, { retryLimit: 5, retryDelaySeconds: 60, retryBackoff: true, expireInSeconds: 600 });
    void this.jobs.work<{ exportId: string }>(BULK_EXPORT_QUEUE, (job) => this.run(job));
    void this.jobs.work<{ exportId: string }>(BULK_EXPORT_EXPIRY_QUEUE, (job) => this.expire(job.data.exportId));
  }

  /** The directory of one export's files. */
  directoryOf(id: string): string {
    return join(resolve(this.config.bulkExport.dir), id);
  }

  async removeFiles(id: string): Promise<void> {
    await rm(this.directoryOf(id), { recursive: true, force: true });
  }

  async run(job: QueuedJob<{ exportId: string }>): Promise<void> {
    const id = job.data.exportId;
    const row = await this.exports.find(id);
    if (!row || !(await this.exports.start(id))) return;
    try {
      await this.write(row);
    } catch (err) {
      if (err instanceof ExportStopped) {
        // Cancelled or over quota (then failed with the reason): nothing of it stays on disk.
        await this.removeFiles(id);
        return;
      }
      if (err instanceof FhirError && err.status < 500) {
        // The client's access no longer allows this export (disabled, scopes, role): retrying cannot help.
        await this.exports.fail(id, err.message);
        await this.removeFiles(id);
        return;
      }
      if (job.retryCount >= RETRY_LIMIT) {
        await this.exports.fail(id, `The export failed after ${job.retryCount + 1} attempts (${(err as { code?: string }).code ?? 'error'})`);
        await this.removeFiles(id);
        return;
      }
      throw err;
    }
  }

  private async write(row: BulkExportRow): Promise<void> {
    const principal = await this.principalOf(row);
    await mkdir(this.directoryOf(row.id), { recursive: true });
    const done = new Set(row.output.map((f) => f.type));
    let used = await this.exports.bytesInUse(row.id);
    const types = row.params.types;
    for (const [n, type] of types.entries()) {
      if (done.has(type)) {
        used += row.output.find((f) => f.type === type)!.bytes;
        continue;
      }
      await this.exports.setProgress(row.id, `${n} of ${types.length} types written; writing ${type}`);
      const ctx = await this.contextFor(principal, row, type);
      const file = await this.writeType(ctx, row, type, used);
      if (!(await this.exports.addFile(row.id, file))) throw new ExportStopped();
      used += file.bytes;
    }
    const expiry = this.config.bulkExport.expireHours * 3600;
    const completed = await this.exports.transaction(async (tx) => {
      if (!(await this.exports.complete(row.id, this.config.bulkExport.expireHours, tx))) return false;
      await this.exports.forgetPseudonyms(row.id, tx);
      await this.jobs.enqueue(tx, BULK_EXPORT_EXPIRY_QUEUE, { exportId: row.id }, { startAfterSeconds: expiry });
      return true;
    });
    if (!completed) throw new ExportStopped();
    this.logger.log({ msg: 'export completed', export: row.id, types: types.length });
  }

  /** The requester as registered now: a disabled or deleted client gets no export, a changed clinical-access flag applies. */
  private async principalOf(row: BulkExportRow): Promise<Principal> {
    const client = await this.clients.find(row.clientId);
    if (!client || client.disabled) throw FhirError.unauthorized('The client that asked for this export is no longer registered or is disabled');
    return { ...row.principal, clinicalAccess: client.clinicalAccess };
  }

  /**
   * The client's own search of this type, authorized and consent-checked as it would be now; for a
   * public-health agency without clinical access (de-identified export only), the consent-bounded
   * PUBHLTH view (`mintFor`): what an agency with clinical access would see, never more.
   */
  private contextFor(principal: Principal, row: BulkExportRow, type: string): Promise<AccessContext> {
    if (row.params.deidentified && principal.role === 'public-health' && !principal.clinicalAccess) return this.system.mintFor('PUBHLTH', principal);
    return this.system.mintAs(principal, buildInteraction('search-type', { resourceType: type, path: `/${type}` }), 'bulk-export');
  }

  /** One type's NDJSON file, page by page; answers its line count and size. */
  private async writeType(ctx: AccessContext, row: BulkExportRow, type: string, used: number): Promise<BulkExportFile> {
    const name = `${type}.ndjson`;
    // 'w' truncates: a resumed export writes the type it was interrupted in from the start.
    const out = createWriteStream(join(this.directoryOf(row.id), name), { flags: 'w' });
    const failed = new Promise<never>((_, reject) => out.once('error', reject));
    failed.catch(() => undefined);
    const searches = this.searchesOf(row, type);
    // Several searches for one type (OR-ed filters, Group members) can match one resource twice.
    const seen = searches.length > 1 ? new Set<string>() : undefined;
    let count = 0;
    let bytes = 0;
    try {
      for (const search of searches) {
        let cursor: string | undefined;
        do {
          const query: QueryParams = { ...search.query, _count: String(this.config.bulkExport.pageSize), ...(cursor ? { _cursor: cursor } : {}) };
          const interaction: Interaction = search.compartment
            ? buildInteraction('search-compartment', { resourceType: type, compartment: search.compartment, query, path: `/Patient/${search.compartment.id}/${type}` })
            : buildInteraction('search-type', { resourceType: type, query, path: `/${type}` });
          const result = await this.sessions.run({ transactional: false }, (session) => this.search.search(ctx, interaction, session.tx));
          const bundle = result.resource as Bundle;
          const page: Resource[] = [];
          for (const entry of bundle.entry ?? []) {
            if (entry.search?.mode !== 'match' || !entry.resource) continue;
            if (seen) {
              if (seen.has(entry.resource.id!)) continue;
              seen.add(entry.resource.id!);
            }
            page.push(entry.resource);
          }
          let chunk = '';
          for (const resource of row.params.deidentified ? await this.deidentified(row, page) : page) chunk += JSON.stringify(resource) + '\n';
          count += page.length;
          bytes += Buffer.byteLength(chunk);
          if (used + bytes > this.config.bulkExport.quotaBytes) {
            await this.exports.fail(row.id, `The export directory's quota (${this.config.bulkExport.quotaBytes} bytes) would be exceeded`);
            throw new ExportStopped();
          }
          // Back-pressure: wait for the disk when the stream's buffer is full.
          if (chunk && !out.write(chunk)) await Promise.race([once(out, 'drain'), failed]);
          if ((await this.exports.status(row.id)) !== 'in-progress') throw new ExportStopped();
          cursor = cursorOf(bundle);
        } while (cursor);
      }
    } finally {
      out.end();
      await Promise.race([once(out, 'close'), failed]).catch(() => undefined);
    }
    return { type, file: name, count, bytes };
  }

  /** A page under Safe Harbor: pseudonyms for every id and reference of the page in one statement. */
  private async deidentified(row: BulkExportRow, page: Resource[]): Promise<Resource[]> {
    if (!page.length) return page;
    const pseudonyms = await this.exports.pseudonyms(row.id, [...new Set(page.flatMap(referencesOf))]);
    const options = { pseudonyms, zip3Allowed: new Set(this.config.bulkExport.zip3Allowed), currentYear: new Date(row.transactionTime).getUTCFullYear() };
    return page.map((r) => deidentify(r, options));
  }

  /** The searches that make up one type's file: its filters (or none) × the Group's members (or none). */
  private searchesOf(row: BulkExportRow, type: string): { query: QueryParams; compartment?: { type: string; id: string } }[] {
    const { since, typeFilters, members, level } = row.params;
    // Nothing changed after the export's transaction time is included (Bulk Data: transactionTime).
    const lastUpdated = [`le${row.transactionTime}`, ...(since ? [`ge${since}`] : [])];
    const filters = typeFilters[type]?.length ? typeFilters[type].map(parseQueryString) : [{}];
    const queries = filters.map((f) => {
      const own = f._lastUpdated === undefined ? [] : Array.isArray(f._lastUpdated) ? f._lastUpdated : [f._lastUpdated];
      return { ...f, _lastUpdated: [...lastUpdated, ...own] };
    });
    if (level !== 'group') return queries.map((query) => ({ query }));
    return (members ?? []).flatMap((id) => queries.map((query) => ({ query, compartment: { type: 'Patient', id } })));
  }

  /** Deletes an expired export's files (its expiry job, enqueued when it completed). */
  async expire(id: string): Promise<void> {
    await this.exports.expire(id);
    if ((await this.exports.status(id)) === 'expired') await this.removeFiles(id);
  }
}

function cursorOf(bundle: Bundle): string | undefined {
  const next = bundle.link?.find((l) => l.relation === 'next')?.url;
  if (!next) return undefined;
  return new URL(next, 'http://x').searchParams.get('_cursor') ?? undefined;
}
