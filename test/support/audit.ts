import type { INestApplication } from '@nestjs/common';
import type { AuditRecord } from '../../src/fhir/pipeline/audit-record';
import { AuditStage } from '../../src/fhir/pipeline/pipeline.stages';

/**
 * Records every AuditRecord the app's real audit stage receives (the stage still runs), into the
 * returned array (`into`, to collect several apps' records in one); clear it with
 * `records.length = 0` between tests.
 */
export function captureAuditRecords(app: INestApplication, into: AuditRecord[] = []): AuditRecord[] {
  const records = into;
  const audit = app.get(AuditStage, { strict: false });
  const record = audit.record.bind(audit);
  jest.spyOn(audit, 'record').mockImplementation(async (r, tx) => {
    records.push(r);
    return record(r, tx);
  });
  // A record that commits with its request's next one (a system-access mint inside an operation).
  const withRequest = audit.recordWithRequest.bind(audit);
  jest.spyOn(audit, 'recordWithRequest').mockImplementation(async (r) => {
    records.push(r);
    return withRequest(r);
  });
  // Records of background work appended together (a batch of rest-hook deliveries' disclosures).
  const recordMany = audit.recordMany.bind(audit);
  jest.spyOn(audit, 'recordMany').mockImplementation(async (rs) => {
    records.push(...rs);
    return recordMany(rs);
  });
  return records;
}
