import { Injectable, Logger } from '@nestjs/common';
import type { Interaction } from './interaction';
import type { Principal } from './principal';
import { AuditRecord, AuditStage, AuthorizationStage, ConsentDecision, ConsentStage } from './pipeline.stages';

/**
 * Foundation-stage authorization: lets every interaction through. Replaced by the auth module's
 * SMART scopes + roles policy (default deny) as soon as AuthModule is imported.
 */
@Injectable()
export class OpenAuthorization extends AuthorizationStage {
  authorize(): void {}
}

/** No consent restriction: the predicate admits every row. Replaced by the consent module. */
@Injectable()
export class UnrestrictedConsent extends ConsentStage {
  async decide(_principal: Principal, _interaction: Interaction): Promise<ConsentDecision> {
    return { predicate: 'TRUE', params: [], basis: 'no-consent-policy' };
  }
}

/** Structured log line per interaction (ids, kinds, statuses only; never PHI) until AuditEvents are stored. */
@Injectable()
export class LogAuditStage extends AuditStage {
  private readonly logger = new Logger('Audit');
  async record(r: AuditRecord): Promise<void> {
    this.logger.log({
      msg: 'fhir-interaction',
      requestId: r.requestId,
      client: r.principal.clientId ?? r.principal.kind,
      organization: r.principal.organization,
      role: r.principal.role,
      purposeOfUse: r.principal.purposeOfUse,
      interaction: r.interaction.kind,
      resourceType: r.interaction.resourceType,
      outcome: r.outcome,
      status: r.status,
      entities: r.entities,
      durationMs: r.durationMs,
    });
  }
}
