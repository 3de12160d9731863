import { hostname } from 'node:os';
import { Injectable } from '@nestjs/common';
import { databaseUnavailable, isDatabaseUnavailable } from '../common/database-unavailable';
import { FhirError } from '../common/fhir-error';
import type { StorageSession } from '../fhir/storage/storage-session';
import type { AuditRecord } from '../fhir/pipeline/audit-record';
import { AuditEventRow, toAuditEventRow } from './audit-event.builder';
import { AuditTrailRepository } from './audit-trail.repository';
import { AuditTrailWriter } from './audit-trail.writer';
import { LogAuditStage } from './log-audit.stage';

/** This app node, for AuditEvent.source.site. */
export const AUDIT_NODE = `${hostname()}:${process.pid}`;

function unavailable(cause: unknown): FhirError {
  // The whole database away: the same answer as any request meets then (Retry-After of an outage).
  if (isDatabaseUnavailable(cause)) return databaseUnavailable();
  return new FhirError(503, 'transient', 'The audit trail could not be written, so the request was not carried out or answered', undefined, { 'Retry-After': '1' });
}

/**
 * The stored audit trail (docs/audit.md): each record becomes an AuditEvent in `audit_event`.
 * With a transactional `session` (a write) the record commits in its transaction (in `audit_pending`, chained by the
 * writer's next batch right after the commit); without, the group-commit writer makes it durable
 * and chained before this returns. Failure fails the request with 503 (fail closed). The
 * structured log line of LogAuditStage (ids and codes only) is kept.
 */
@Injectable()
export class StoredAuditStage extends LogAuditStage {
  constructor(
    private readonly writer: AuditTrailWriter,
    private readonly repository: AuditTrailRepository,
  ) {
    super();
  }

  /** Records of a request waiting for its next record (recordWithRequest), by request id. */
  private readonly withRequest = new Map<string, Promise<void>[]>();

  override async recordWithRequest(r: AuditRecord): Promise<void> {
    if (!r.requestId) return this.recordNow(r, undefined, false);
    await super.record(r);
    const written = this.writer.append(toAuditEventRow(r, AUDIT_NODE), { withNext: true }).catch((err: unknown) => {
      throw unavailable(err);
    });
    const requestId = r.requestId;
    this.withRequest.set(requestId, [...(this.withRequest.get(requestId) ?? []), written]);
    // Awaited by the request's next record. Forgotten once written (nothing kept per request);
    // a failure stays for that record to fail on, and is handled here so it is not "unhandled".
    const forget = (): void => {
      const left = (this.withRequest.get(requestId) ?? []).filter((p) => p !== written);
      if (left.length) this.withRequest.set(requestId, left);
      else this.withRequest.delete(requestId);
    };
    written.then(forget, () => undefined);
  }

  override async record(r: AuditRecord, session?: StorageSession): Promise<void> {
    const earlier = r.requestId ? (this.withRequest.get(r.requestId) ?? []) : [];
    if (earlier.length) this.withRequest.delete(r.requestId!);
    try {
      await this.recordNow(r, session, earlier.length > 0);
    } finally {
      // The request's earlier records: in this record's batch (a read's), or started now (a write's).
      await Promise.all(earlier);
    }
  }

  /** One append for all of `records` (the group-commit writer takes them into one batch): one commit, chained in order. */
  override async recordMany(records: readonly AuditRecord[]): Promise<void> {
    if (!records.length) return;
    for (const r of records) await super.record(r);
    try {
      await this.writer.appendMany(records.map((r) => toAuditEventRow(r, AUDIT_NODE)));
    } catch (err) {
      throw unavailable(err);
    }
  }

  private async recordNow(r: AuditRecord, session: StorageSession | undefined, earlier: boolean): Promise<void> {
    await super.record(r);
    const row = toAuditEventRow(r, AUDIT_NODE);
    if (session?.tx.queryRunner?.isTransactionActive) {
      // The session's audit rows: appended together right before its COMMIT.
      const rows = session.auditRows as AuditEventRow[];
      rows.push(row);
      if (rows.length > 1) return;
      // Written with the session's other deferred inserts (e.g. a Subscription match row) in one statement.
      session.beforeCommit(async () => {
        const all = rows.splice(0, rows.length);
        if (all.length) session.deferInsert({ ...this.repository.pendingInsert(all), onError: unavailable });
      });
      // Committed with the write, chained right after by the group-commit writer (no chain lock
      // held across the write's commit); the response waits for it so auditors see it at once.
      session.afterCommit(() => this.writer.chainPending());
      // Earlier records of the request waiting in the writer are not held until the commit.
      if (earlier) this.writer.startNow();
      return;
    }
    try {
      await this.writer.append(row);
    } catch (err) {
      throw unavailable(err);
    }
  }
}
