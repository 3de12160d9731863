import { hostname } from 'node:os';
import { Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { afterCommit, beforeCommit } from '../common/before-commit';
import { databaseUnavailable, isDatabaseUnavailable } from '../common/database-unavailable';
import { FhirError } from '../common/fhir-error';
import type { AuditRecord } from './audit-record';
import { AuditEventRow, toAuditEventRow } from './audit-event.builder';
import { AuditTrailRepository } from './audit-trail.repository';
import { AuditTrailWriter } from './audit-trail.writer';
import { LogAuditStage } from './log-audit.stage';

/** This app node, for AuditEvent.source.site. */
export const AUDIT_NODE = `${hostname()}:${process.pid}`;

/** Rows of a write transaction, appended together right before it commits. */
const pendingInTx = new WeakMap<EntityManager, AuditEventRow[]>();

function unavailable(cause: unknown): FhirError {
  // The whole database away: the same answer as any request meets then (Retry-After of an outage).
  if (isDatabaseUnavailable(cause)) return databaseUnavailable();
  return new FhirError(503, 'transient', 'The audit trail could not be written, so the request was not carried out or answered', undefined, { 'Retry-After': '1' });
}

/**
 * The stored audit trail (docs/audit.md): each record becomes an AuditEvent in `audit_event`.
 * With `tx` (a write) the record commits in that transaction (in `audit_pending`, chained by the
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

  override async record(r: AuditRecord, tx?: EntityManager): Promise<void> {
    await super.record(r);
    const row = toAuditEventRow(r, AUDIT_NODE);
    if (tx?.queryRunner?.isTransactionActive) {
      const rows = pendingInTx.get(tx);
      if (rows) {
        rows.push(row);
        return;
      }
      pendingInTx.set(tx, [row]);
      beforeCommit(tx, async () => {
        const all = pendingInTx.get(tx) ?? [];
        pendingInTx.delete(tx);
        try {
          await this.repository.appendPending(all, tx);
        } catch (err) {
          throw unavailable(err);
        }
      });
      // Committed with the write, chained right after by the group-commit writer (no chain lock
      // held across the write's commit); the response waits for it so auditors see it at once.
      afterCommit(tx, () => this.writer.chainPending());
      return;
    }
    try {
      await this.writer.append(row);
    } catch (err) {
      throw unavailable(err);
    }
  }
}
