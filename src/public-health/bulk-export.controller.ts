import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Controller, Delete, Get, Inject, Param, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { FhirError } from '../common/fhir-error';
import { APP_CONFIG, AppConfig } from '../config/app.config';
import { AuditStage } from '../fhir/pipeline/pipeline.stages';
import type { Principal } from '../fhir/pipeline/principal';
import { AuditedCall } from '../pipeline/audited-call';
import { BulkExportJob } from './bulk-export.job';
import { bulkExportFileUrl, BULK_EXPORT_ROUTE } from './bulk-export.paths';
import { BulkExportRepository, BulkExportRow } from './bulk-export.repository';

const FHIR_JSON = 'application/fhir+json; charset=utf-8';
const ID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const FILE_RE = /^[A-Z][A-Za-z]{1,63}\.ndjson$/;
/** Seconds a client is asked to wait between status polls. */
const RETRY_AFTER_SECONDS = 5;

/**
 * Bulk Data status and files (docs/public-health.md): `GET /bulk-export/{id}` (202 + X-Progress
 * while running, 200 + manifest when done), `DELETE /bulk-export/{id}` (cancel, files removed),
 * `GET /bulk-export/{id}/{Type}.ndjson`. Only the client that asked for the export sees any of it;
 * for any other client the export does not exist (404, as a hidden resource). Every call is audited.
 */
@Controller(BULK_EXPORT_ROUTE)
export class BulkExportController {
  constructor(
    private readonly exports: BulkExportRepository,
    private readonly job: BulkExportJob,
    private readonly audit: AuditStage,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  @Get(':id')
  status(@Req() req: Request, @Res() res: Response, @Param('id') id: string): Promise<void> {
    return this.audited(req, 'bulk-export-status', 'R', async (row) => {
      switch (row.status) {
        case 'accepted':
        case 'in-progress':
          return {
            status: 202,
            send: () => {
              res.status(202).setHeader('X-Progress', (row.progress ?? 'accepted').slice(0, 100));
              res.setHeader('Retry-After', String(RETRY_AFTER_SECONDS));
              res.end();
            },
          };
        case 'completed':
          return {
            status: 200,
            send: () => {
              if (row.expiresAt) res.setHeader('Expires', new Date(row.expiresAt).toUTCString());
              res.status(200).type('application/json').send(JSON.stringify(this.manifest(row)));
            },
          };
        case 'failed':
          // Bulk Data "error status": the export ended with an error; polling again will not change it.
          return { status: 500, send: () => void res.status(500).type(FHIR_JSON).send(JSON.stringify(outcome('error', 'exception', row.error ?? 'The export failed'))) };
        default:
          throw FhirError.notFound(`Export ${row.id} was ${row.status}`);
      }
    }, id);
  }

  @Delete(':id')
  cancel(@Req() req: Request, @Res() res: Response, @Param('id') id: string): Promise<void> {
    return this.audited(req, 'bulk-export-cancel', 'D', async (row, principal) => {
      if (!(await this.exports.cancel(row.id, principal.clientId!))) throw FhirError.notFound(`Export ${row.id} was ${row.status}`);
      // A running job stops at its next page and removes them again.
      await this.job.removeFiles(row.id);
      return { status: 202, send: () => void res.status(202).type(FHIR_JSON).send(JSON.stringify(outcome('information', 'informational', `Export ${row.id} cancelled; its files are deleted`))) };
    }, id);
  }

  @Get(':id/:file')
  download(@Req() req: Request, @Res() res: Response, @Param('id') id: string, @Param('file') file: string): Promise<void> {
    return this.audited(req, 'bulk-export-download', 'R', async (row) => {
      const entry = FILE_RE.test(file) && row.status === 'completed' ? row.output.find((f) => f.file === file && f.count > 0) : undefined;
      if (!entry) throw FhirError.notFound(`Export ${row.id} has no file ${file.slice(0, 70)}`);
      const path = join(this.job.directoryOf(row.id), entry.file);
      const size = (await stat(path).catch(() => undefined))?.size;
      if (size === undefined) throw FhirError.notFound(`Export ${row.id} has no file ${entry.file}`);
      return {
        status: 200,
        send: () =>
          new Promise<void>((resolve) => {
            res.status(200).type('application/fhir+ndjson').setHeader('Content-Length', String(size));
            const stream = createReadStream(path);
            // Headers are gone: cut the response so the client sees an incomplete file, not a complete one.
            stream.once('error', () => res.destroy());
            res.once('close', () => resolve());
            stream.pipe(res);
          }),
      };
    }, id);
  }

  /** Bulk Data 2.0 complete-status manifest; types with no resources have no file (empty output allowed). */
  private manifest(row: BulkExportRow): Record<string, unknown> {
    return {
      transactionTime: row.transactionTime,
      request: row.request,
      requiresAccessToken: true,
      output: row.output.filter((f) => f.count > 0).map((f) => ({ type: f.type, url: bulkExportFileUrl(this.config.publicBaseUrl, row.id, f.file), count: f.count })),
      error: [],
    };
  }

  /**
   * Finds the caller's own export (anything else: 404) and audits the call once, before the
   * response is sent (fail closed). `answer` returns the status and what sends the response.
   */
  private async audited(
    req: Request,
    subtype: string,
    action: 'R' | 'D',
    answer: (row: BulkExportRow, principal: Principal) => Promise<{ status: number; send: () => void | Promise<void> }>,
    id: string,
  ): Promise<void> {
    const call = new AuditedCall(this.audit, req, { kind: 'operation', subtype, action, accessBasis: ['policy: the client that requested the export'] });
    const principal = call.principal;
    let result: { status: number; send: () => void | Promise<void> };
    try {
      if (principal.kind !== 'client' || !principal.clientId) throw FhirError.unauthorized('A valid bearer token is required');
      const row = ID_RE.test(id) ? await this.exports.find(id) : undefined;
      // Another client's export is answered as one that does not exist.
      if (!row || row.clientId !== principal.clientId) throw FhirError.notFound(`Export ${id.slice(0, 64)} is not known`);
      result = await answer(row, principal);
    } catch (err) {
      await call.failed(err);
      throw err;
    }
    await call.succeeded(result.status);
    await result.send();
  }
}

function outcome(severity: 'error' | 'information', code: string, diagnostics: string): Record<string, unknown> {
  return { resourceType: 'OperationOutcome', issue: [{ severity, code, diagnostics }] };
}
