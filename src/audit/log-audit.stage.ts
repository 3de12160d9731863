import { Injectable, Logger } from '@nestjs/common';
import { AuditRecord, AuditStage } from '../fhir/pipeline/pipeline.stages';

/** Structured log line per interaction (ids, kinds, statuses only; never PHI) until AuditEvents are stored. */
@Injectable()
export class LogAuditStage extends AuditStage {
  private readonly logger = new Logger('Audit');
  async record(r: AuditRecord): Promise<void> {
    this.logger.log({
      msg: 'fhir-interaction',
      requestId: r.requestId,
      client: r.principal.clientId ?? r.principal.kind,
      claimedClientId: r.claimedClientId,
      organization: r.principal.organization,
      role: r.principal.role,
      purposeOfUse: r.principal.purposeOfUse,
      interaction: r.interaction.kind,
      operation: r.interaction.operation,
      resourceType: r.interaction.resourceType,
      outcome: r.outcome,
      status: r.status,
      entities: r.entities,
      durationMs: r.durationMs,
    });
  }
}
