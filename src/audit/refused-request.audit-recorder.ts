import { Injectable } from '@nestjs/common';
import { RefusedRequest, RefusedRequestAudit } from '../common/http/refused-request.audit';
import { AuditStage } from '../fhir/pipeline/pipeline.stages';
import { ANONYMOUS, Principal } from '../fhir/pipeline/principal';
import { auditRecord } from '../fhir/pipeline/audit-record';

/** A request refused before the pipeline, as one `request` audit record (the error filter calls it). */
@Injectable()
export class RefusedRequestAuditRecorder extends RefusedRequestAudit {
  constructor(private readonly audit: AuditStage) {
    super();
  }

  record(r: RefusedRequest): Promise<void> {
    return this.audit.record(
      auditRecord({
        kind: 'request',
        subtype: r.method,
        requestId: r.requestId,
        principal: (r.user as Principal | undefined) ?? ANONYMOUS,
        address: r.address,
        path: r.path,
        outcome: 'failure',
        status: r.status,
        failureCode: r.failureCode,
        durationMs: 0,
      }),
    );
  }
}
