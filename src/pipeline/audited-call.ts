import type { Request } from 'express';
import { FhirError } from '../common/fhir-error';
import { RequestContext } from '../common/request-context';
import { AuditAction, AuditEntity, AuditEventKind, auditRecord } from '../fhir/pipeline/audit-record';
import { AuditStage } from '../fhir/pipeline/pipeline.stages';
import { ANONYMOUS, Principal } from '../fhir/pipeline/principal';

/** The caller the authentication guard attached to the request (anonymous when none did). */
export function callerOf(req: Request): Principal {
  return (req as Request & { user?: Principal }).user ?? ANONYMOUS;
}

/** The status and FHIR issue code an audit record gives a call that threw (a non-FHIR error is a 500 `exception`). */
export function failureOf(err: unknown): { status: number; failureCode: string } {
  return err instanceof FhirError ? { status: err.status, failureCode: err.issues[0]?.code ?? 'exception' } : { status: 500, failureCode: 'exception' };
}

/** What the record of one kind of call says besides its outcome. */
export interface AuditedCallKind {
  kind: AuditEventKind;
  subtype: string;
  /** Why the caller may make the call (`policy: admin role`). */
  accessBasis: readonly string[];
  /** Overrides the action the kind implies (a download is a read of an operation's output). */
  action?: AuditAction;
}

/**
 * One HTTP call outside the FHIR API (the admin API, the audit export, bulk-export files) and its
 * audit record: the caller and the start time are taken when the call arrives, and `succeeded` or
 * `failed` records how it ended, allowed or denied, before the answer is sent (fail closed: an
 * audit failure fails the call). The controllers keep their own role checks (default deny).
 */
export class AuditedCall {
  readonly principal: Principal;
  private readonly started = performance.now();

  constructor(
    private readonly audit: AuditStage,
    private readonly req: Request,
    private readonly what: AuditedCallKind,
  ) {
    this.principal = callerOf(req);
  }

  succeeded(status: number, entities?: readonly AuditEntity[]): Promise<void> {
    return this.record('success', status, undefined, entities);
  }

  failed(err: unknown): Promise<void> {
    const { status, failureCode } = failureOf(err);
    return this.record('failure', status, failureCode);
  }

  private record(outcome: 'success' | 'failure', status: number, failureCode?: string, entities?: readonly AuditEntity[]): Promise<void> {
    const record = auditRecord({
      kind: this.what.kind,
      subtype: this.what.subtype,
      principal: this.principal,
      address: this.req.ip,
      path: this.req.path,
      outcome,
      status,
      failureCode,
      entities,
      accessBasis: this.what.accessBasis,
      durationMs: Math.round(performance.now() - this.started),
      requestId: RequestContext.requestId(),
    });
    return this.audit.record(this.what.action ? { ...record, action: this.what.action } : record);
  }
}
