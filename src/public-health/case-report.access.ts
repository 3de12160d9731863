import { Injectable, OnModuleInit } from '@nestjs/common';
import type { SqlBinder } from '../fhir/pipeline/access-predicate';
import { JudgedRow, JudgingRequester, ReadAccessRegistry, TypeAccessRule } from '../fhir/pipeline/read-access';

/**
 * Who reads a case report Bundle besides its custodian, the agency: the organization that reported
 * it (the trigger's custodian, recorded in `case_report.reporting_org`). Bundle stays custodian-only
 * for everyone else (src/consent/type-access-rules.ts), so no third organization sees a report.
 * A table look-up by primary key rather than a `securityContext`: Bundle has none in R4, and the
 * reporter is fixed when the report is made.
 */
@Injectable()
export class CaseReportReadAccess implements TypeAccessRule, OnModuleInit {
  readonly name = 'case-report-reporting-organization';
  readonly resourceTypes = ['Bundle'];

  constructor(private readonly registry: ReadAccessRegistry) {}

  onModuleInit(): void {
    this.registry.registerTypeRule(this);
  }

  render(row: JudgedRow, requester: JudgingRequester, _bind: SqlBinder): string {
    return `EXISTS (SELECT 1 FROM case_report crr WHERE crr.id = ${row.id} AND crr.reporting_org = ${requester.organization})`;
  }
}
