import { Injectable, Logger } from '@nestjs/common';
import type { AuditRecord } from './audit-record';
import { AuditStage } from '../fhir/pipeline/pipeline.stages';

/**
 * Structured log line per audit record until AuditEvents are stored: ids, kinds, statuses and
 * patient ids only — never resource content, names, identifiers or query values.
 */
@Injectable()
export class LogAuditStage extends AuditStage {
  private readonly logger = new Logger('Audit');
  async record(r: AuditRecord): Promise<void> {
    this.logger.log({
      msg: 'audit',
      kind: r.kind,
      subtype: r.subtype,
      action: r.action,
      requestId: r.requestId,
      bundleEntry: r.bundleEntry,
      client: r.principal.clientId ?? r.principal.kind,
      claimedClientId: r.claimedClientId,
      organization: r.principal.organization,
      role: r.principal.role,
      purposeOfUse: r.purposeOfUse,
      breakGlass: r.breakGlassReason ? true : undefined,
      resourceType: r.resourceType,
      outcome: r.outcome,
      status: r.status,
      failureCode: r.failureCode,
      // Bounded: a large search or Bundle names its count, not a megabyte of ids.
      entities: r.entities.length > 100 ? `${r.entities.length} resources` : r.entities.map((e) => `${e.reference}/_history/${e.versionId ?? ''}`),
      patients: r.patients.length > 100 ? `${r.patients.length} patients` : r.patients,
      accessBasis: r.accessBasis,
      system: r.system,
      durationMs: r.durationMs,
    });
  }
}
