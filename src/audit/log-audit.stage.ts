import { Injectable, Logger } from '@nestjs/common';
import type { AuditRecord } from '../fhir/pipeline/audit-record';
import { AuditStage } from '../fhir/pipeline/pipeline.stages';

/**
 * The audit fields of a request's access log line: ids, kinds, codes and counts — never resource
 * content, names, identifiers, query values, nor patient or resource ids (those are in the stored
 * audit trail, for auditors; logs travel further).
 */
export interface RequestAuditFields {
  interaction: string;
  subtype?: string;
  action: string;
  client: string;
  claimedClientId?: string;
  organization?: string;
  role?: string;
  purposeOfUse?: string;
  breakGlass?: true;
  resourceType?: string;
  outcome: string;
  failureCode?: string;
  /** The kinds of basis access was granted on (scope, consent, policy, system), without their descriptions. */
  accessBasis?: readonly string[];
  patients: number;
  resources: number;
  /** Records of the request (a Bundle: one per entry and one for the Bundle). */
  auditRecords: number;
}

interface Pending {
  fields?: RequestAuditFields;
  records: number;
  /** Over all the request's records (a Bundle's entries name what they touched). */
  patients: Set<string>;
  resources: number;
  at: number;
}

/** Audit fields waiting for their request's access log line, by request id. */
const pending = new Map<string, Pending>();
/** Fields not taken by then (a request whose line was already written) get a line of their own. */
const UNCLAIMED_MS = 30_000;

/** The audit fields of this request, for its one access log line (src/common/http/logging.ts); taken once. */
export function takeRequestAuditFields(requestId: unknown): Record<string, unknown> | undefined {
  if (typeof requestId !== 'string') return undefined;
  const p = pending.get(requestId);
  if (!p) return undefined;
  pending.delete(requestId);
  return p.fields ? { audit: totals(p) } : undefined;
}

function totals(p: Pending): RequestAuditFields {
  return { ...p.fields!, patients: p.patients.size, resources: p.resources, auditRecords: p.records };
}

function fieldsOf(r: AuditRecord): RequestAuditFields {
  return {
    interaction: r.kind,
    subtype: r.subtype,
    action: r.action,
    client: r.principal.clientId ?? r.principal.kind,
    claimedClientId: r.claimedClientId,
    organization: r.principal.organization,
    role: r.principal.role,
    purposeOfUse: r.purposeOfUse,
    breakGlass: r.breakGlassReason ? true : undefined,
    resourceType: r.resourceType,
    outcome: r.outcome,
    failureCode: r.failureCode,
    // The kinds only (scope, consent, policy, system): descriptions name resources and scope queries.
    accessBasis: r.accessBasis.length ? [...new Set(r.accessBasis.map((b) => b.split(':')[0].trim()))] : undefined,
    patients: r.patients.length,
    resources: r.entities.length,
    auditRecords: 1,
  };
}

/**
 * The audit record's log presence: for a request, its fields join that request's single access
 * log line (pino-http's, written when the response finishes); a Bundle's entries count on the
 * Bundle's line. Records of no request (internal work) get a line of their own.
 */
@Injectable()
export class LogAuditStage extends AuditStage {
  private readonly logger = new Logger('Audit');
  private sweeper?: NodeJS.Timeout;

  async record(r: AuditRecord): Promise<void> {
    if (!r.requestId) {
      this.logger.log({ msg: 'audit', ...fieldsOf(r), system: r.system, durationMs: r.durationMs });
      return;
    }
    const p = pending.get(r.requestId) ?? { records: 0, patients: new Set<string>(), resources: 0, at: Date.now() };
    p.records++;
    for (const id of r.patients) p.patients.add(id);
    p.resources += r.entities.length;
    if (r.bundleEntry !== undefined) {
      // The Bundle's own record, which comes last, replaces an entry's fields.
      p.fields ??= fieldsOf(r);
    } else {
      p.fields = fieldsOf(r);
    }
    pending.set(r.requestId, p);
    this.sweep();
  }

  private sweep(): void {
    this.sweeper ??= setTimeout(() => {
      this.sweeper = undefined;
      const cutoff = Date.now() - UNCLAIMED_MS;
      for (const [requestId, p] of pending) {
        if (p.at >= cutoff) continue;
        pending.delete(requestId);
        if (p.fields) this.logger.log({ msg: 'audit', requestId, ...totals(p) });
      }
      if (pending.size) this.sweep();
    }, UNCLAIMED_MS);
    this.sweeper.unref();
  }
}
