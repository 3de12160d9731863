import { Inject, Injectable, OnModuleInit } from '@nestjs/common';
import { WriteEvent, WriteEvents, WriteListener } from '../fhir/pipeline/write-events';
import { JobQueue } from '../jobs/job-queue';
import { CASE_REPORT_CONFIG, CaseReportConfig } from './case-report.config';
import { caseReportTriggerOf } from './case-report.trigger';

/** The outbox queue of case reports (data: ids only, never clinical content). */
export const CASE_REPORT_QUEUE = 'public-health.case-report';

export interface CaseReportJobData {
  resourceType: 'Condition' | 'Observation';
  id: string;
  patientId: string;
}

/**
 * Enqueues a case-report job for every create or update of a Condition or laboratory Observation
 * with a reportable code, in the write's transaction (pre-commit): committed with the write, so no
 * report is lost, and gone with a write that rolled back (a rerun enqueues afresh). Whether it is a
 * new episode is the job's decision, under its lock: an update or a repeated result enqueues a job
 * that finds the episode reported.
 */
@Injectable()
export class CaseReportListener implements WriteListener, OnModuleInit {
  readonly name = 'public-health-case-report';
  readonly phase = 'pre-commit' as const;
  // After consent (100, 200) and identity (300); independent of them.
  readonly order = 400;
  readonly resourceTypes = ['Condition', 'Observation'];

  constructor(
    private readonly events: WriteEvents,
    private readonly jobs: JobQueue,
    @Inject(CASE_REPORT_CONFIG) private readonly config: CaseReportConfig,
  ) {}

  onModuleInit(): void {
    this.events.register(this);
  }

  async handle({ tx, resourceType, id, after }: WriteEvent): Promise<void> {
    const trigger = caseReportTriggerOf(after, this.config.reportableCodes);
    if (!trigger) return;
    await this.jobs.enqueue<CaseReportJobData>(tx, CASE_REPORT_QUEUE, { resourceType: resourceType as CaseReportJobData['resourceType'], id, patientId: trigger.patientId });
  }
}
