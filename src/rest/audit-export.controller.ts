import { Controller, Get, Query, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { FhirError } from '../common/fhir-error';
import { databaseUnavailable, isDatabaseUnavailable } from '../common/database-unavailable';
import { parseFhirDateRange } from '../common/fhir-date';
import { AuditStage } from '../fhir/pipeline/pipeline.stages';
import { AuditedCall } from '../pipeline/audited-call';
import { AuditExportRange, AuditTrailRepository } from '../audit/audit-trail.repository';

/** Headers stating what an export holds, so an auditor can check it (and `$verify-chain` over it). */
export const AUDIT_EXPORT_HEADERS = {
  count: 'X-Audit-Record-Count',
  firstSeq: 'X-Audit-First-Seq',
  lastSeq: 'X-Audit-Last-Seq',
  lastHash: 'X-Audit-Last-Hash',
} as const;

/**
 * `GET /audit/export?since=…&until=…` (auditors): the AuditEvents recorded in [since, until) as
 * NDJSON (`application/fhir+ndjson`), oldest first, streamed page by page so a year of audit
 * never sits in memory. The response headers state how many records it holds and their first and
 * last chain positions (fixed before the first line, so later appends cannot make them untrue).
 * The export itself is audited before the first byte is sent.
 */
@Controller('audit')
export class AuditExportController {
  constructor(
    private readonly trail: AuditTrailRepository,
    private readonly audit: AuditStage,
  ) {}

  @Get('export')
  async export(@Req() req: Request, @Res() res: Response, @Query('since') since?: unknown, @Query('until') until?: unknown): Promise<void> {
    const call = new AuditedCall(this.audit, req, { kind: 'operation', subtype: 'audit-export', accessBasis: ['policy: auditor role'] });
    let range: AuditExportRange;
    try {
      if (call.principal.role !== 'auditor') throw FhirError.forbidden('The audit export needs the auditor role');
      range = await this.trail.exportRange(instant(since, 'since'), instant(until, 'until'));
    } catch (caught) {
      // The range is counted before any byte is sent, so a database outage here is still a 503.
      const err = isDatabaseUnavailable(caught) ? databaseUnavailable() : caught;
      await call.failed(err);
      throw err;
    }
    await call.succeeded(200);
    res.status(200).type('application/fhir+ndjson');
    res.setHeader(AUDIT_EXPORT_HEADERS.count, String(range.count));
    if (range.firstSeq !== undefined) res.setHeader(AUDIT_EXPORT_HEADERS.firstSeq, range.firstSeq);
    if (range.lastSeq !== undefined) res.setHeader(AUDIT_EXPORT_HEADERS.lastSeq, range.lastSeq);
    if (range.lastHash !== undefined) res.setHeader(AUDIT_EXPORT_HEADERS.lastHash, range.lastHash);
    try {
      for await (const page of this.trail.stream(range)) {
        const chunk = page.map((e) => JSON.stringify(e)).join('\n') + '\n';
        // Back-pressure: wait for the socket when its buffer is full.
        if (!res.write(chunk)) await new Promise((resolve) => res.once('drain', resolve));
        if (res.destroyed) return;
      }
    } catch {
      // Headers are gone: cut the stream so the client sees an incomplete export, not a complete one.
      res.destroy();
      return;
    }
    res.end();
  }
}

function instant(value: unknown, name: string): string {
  const range = typeof value === 'string' ? parseFhirDateRange(value) : undefined;
  if (!range) throw FhirError.badRequest(`${name} must be one FHIR date or instant`, [name]);
  return range.start;
}
