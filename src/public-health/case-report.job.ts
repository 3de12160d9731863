import { randomUUID } from 'node:crypto';
import { Inject, Injectable, Logger, OnModuleInit } from '@nestjs/common';
import type { Encounter, Organization, Patient } from '@medplum/fhirtypes';
import type { EntityManager } from 'typeorm';
import { auditRecord } from '../fhir/pipeline/audit-record';
import { APP_CONFIG, AppConfig } from '../config/app.config';
import type { AccessContext } from '../fhir/pipeline/access-context';
import { SystemAccess } from '../fhir/pipeline/system-access';
import { AuditStage } from '../fhir/pipeline/pipeline.stages';
import type { Principal } from '../fhir/pipeline/principal';
import { ResourceRepository, versionWrite } from '../fhir/storage/resource.repository';
import { StorageSession, StorageSessions } from '../fhir/storage/storage-session';
import { JobQueue, QueuedJob } from '../jobs/job-queue';
import { CASE_REPORT_CONFIG, CaseReportConfig } from './case-report.config';
import { caseReportBundle, caseReportTask, CaseReportContents } from './case-report.document';
import { CASE_REPORT_QUEUE, CaseReportJobData } from './case-report.listener';
import { CaseReportRepository } from './case-report.repository';
import { caseReportTriggerOf } from './case-report.trigger';

type Outcome = 'reported' | 'same-episode' | 'withheld' | 'not-reportable';

/**
 * The case-report job (docs/public-health.md, Case reports), one per qualifying write, in a
 * transaction of its own: decides under an advisory lock per patient × code whether the trigger
 * opens a new episode, and if so builds the eICR-like document Bundle and the agency's Task and
 * stores both as the agency (named system context `case-reporting`), with the `case_report` row and
 * the audit record, all in that one transaction. The patient data is read under
 * `case-reporting` where mandated reporting overrides opt-out (the default), otherwise under the
 * consent-bounded `mintFor('PUBHLTH')` view, in which a patient whose consent does not permit public
 * health is not reported (and that is audited). Idempotent: a redelivered job finds its episode.
 */
@Injectable()
export class CaseReportJob implements OnModuleInit {
  private readonly logger = new Logger('CaseReport');

  constructor(
    private readonly jobs: JobQueue,
    private readonly sessions: StorageSessions,
    private readonly system: SystemAccess,
    private readonly repository: ResourceRepository,
    private readonly reports: CaseReportRepository,
    private readonly audit: AuditStage,
    @Inject(CASE_REPORT_CONFIG) private readonly config: CaseReportConfig,
    @Inject(APP_CONFIG) private readonly app: AppConfig,
  ) {}

  async onModuleInit(): Promise<void> {
    this.jobs.define(CASE_REPORT_QUEUE, { retryLimit: 5, retryDelaySeconds: 2, retryBackoff: true, retryDelayMaxSeconds: 300, expireInSeconds: 300 });
    await this.jobs.work<CaseReportJobData>(CASE_REPORT_QUEUE, (job) => this.run(job), { concurrency: 2 });
  }

  /** The agency, as the principal its reports are written by (custodian of the Bundle and Task). */
  private get agency(): Principal {
    return { kind: 'system', clientId: 'system:case-reporting', organization: this.config.agencyOrganization, scopes: [] };
  }

  async run(job: QueuedJob<CaseReportJobData>): Promise<void> {
    const started = Date.now();
    const outcome = await this.sessions.run({ transactional: true }, (session) => this.report(session, job.data));
    // Ids and the outcome only: no clinical content in logs.
    this.logger.log({ msg: 'case report', job: job.id, trigger: `${job.data.resourceType}/${job.data.id}`, outcome, ms: Date.now() - started });
  }

  private async report(session: StorageSession, data: CaseReportJobData): Promise<Outcome> {
    const { tx } = session;
    const writer = await this.system.mint('case-reporting', this.agency);
    const overrides = this.config.mandatedReportingOverridesOptOut;
    const reader = overrides ? writer : await this.system.mintFor('PUBHLTH', this.agency);
    const triggerRef = `${data.resourceType}/${data.id}`;
    const stored = await this.repository.readCurrent(reader, data.resourceType, data.id, tx);
    if (!stored?.resource || stored.deleted) {
      if (overrides) return 'not-reportable'; // deleted before the job ran
      await this.record(session, 'withheld', triggerRef, data.patientId, [], [
        `case-report: not sent: ${triggerRef} is not in the PUBHLTH consent view (the patient's consent does not permit public-health use, or it was deleted); mandated reporting does not override opt-out (mandatedReportingOverridesOptOut=false)`,
      ]);
      return 'withheld';
    }
    const trigger = caseReportTriggerOf(stored.resource, this.config.reportableCodes);
    if (!trigger) return 'not-reportable'; // changed since: no longer reportable
    await this.reports.lockEpisodes(tx, trigger.patientId, trigger.code.system, trigger.code.code);
    const episode = await this.reports.episodeOf(tx, trigger.patientId, trigger.code.system, trigger.code.code, trigger.clinicalDate, this.config.episodeGapDays);
    if (episode) {
      await this.reports.extendEpisode(tx, episode, trigger.clinicalDate);
      return 'same-episode';
    }
    const patient = await this.readAs<Patient>(reader, tx, 'Patient', trigger.patientId);
    if (!patient) {
      if (overrides) return 'not-reportable';
      await this.record(session, 'withheld', triggerRef, trigger.patientId, [], [
        `case-report: not sent: Patient/${trigger.patientId} is not in the PUBHLTH consent view; mandated reporting does not override opt-out (mandatedReportingOverridesOptOut=false)`,
      ]);
      return 'withheld';
    }
    const encounter = trigger.encounterId ? await this.readAs<Encounter>(reader, tx, 'Encounter', trigger.encounterId) : undefined;
    const reportingOrganizationId = stored.custodianOrg ?? undefined;
    const reportingOrganization = reportingOrganizationId ? await this.readAs<Organization>(reader, tx, 'Organization', reportingOrganizationId) : undefined;
    const contents: CaseReportContents = {
      reportId: randomUUID(),
      compositionId: randomUUID(),
      trigger: stored.resource,
      code: trigger.code,
      patient,
      encounter,
      reportingOrganizationId,
      reportingOrganization,
      agencyOrganizationId: this.config.agencyOrganization,
      valueSetUrl: this.config.valueSetUrl,
      fhirBaseUrl: this.app.fhirBaseUrl,
      now: new Date().toISOString(),
    };
    const taskId = randomUUID();
    const basis = overrides
      ? 'case-report: mandated reporting of a reportable condition; overrides opt-out (mandatedReportingOverridesOptOut=true)'
      : 'case-report: mandated reporting of a reportable condition; patient data read in the PUBHLTH consent view (mandatedReportingOverridesOptOut=false)';
    const bundle = await this.repository.write(writer, versionWrite(writer, 'create', 'POST', caseReportBundle(contents), contents.reportId), tx);
    const task = await this.repository.write(writer, versionWrite(writer, 'create', 'POST', caseReportTask(taskId, contents), taskId), tx);
    await this.reports.insert(tx, {
      id: contents.reportId,
      taskId,
      patientId: trigger.patientId,
      codeSystem: trigger.code.system,
      code: trigger.code.code,
      clinicalDate: trigger.clinicalDate,
      reportingOrg: reportingOrganizationId ?? null,
      triggerRef,
      basis,
    });
    const version = (v: { version?: { versionId: number } }) => (v.version ? String(v.version.versionId) : undefined);
    await this.record(
      session,
      'reported',
      triggerRef,
      trigger.patientId,
      [
        { reference: `Bundle/${contents.reportId}`, versionId: version(bundle), patients: [trigger.patientId] },
        { reference: `Task/${taskId}`, versionId: version(task), patients: [trigger.patientId] },
      ],
      [basis],
    );
    return 'reported';
  }

  private async readAs<T>(ctx: AccessContext, tx: EntityManager, type: string, id: string): Promise<T | undefined> {
    const row = await this.repository.readCurrent(ctx, type, id, tx);
    return row?.resource && !row.deleted ? (row.resource as T) : undefined;
  }

  /** One audit record per decision that discloses or withholds, in the job's transaction. */
  private async record(session: StorageSession, outcome: Outcome, triggerRef: string, patientId: string, made: { reference: string; versionId?: string; patients: string[] }[], basis: string[]): Promise<void> {
    await this.audit.record(
      auditRecord({
        kind: 'system-access',
        subtype: outcome === 'reported' ? 'case-report' : 'case-report-withheld',
        principal: this.agency,
        outcome: 'success',
        status: outcome === 'reported' ? 201 : 200,
        system: 'case-reporting',
        entities: [{ reference: triggerRef, patients: [patientId] }, ...made],
        accessBasis: basis,
        durationMs: 0,
      }),
      session,
    );
  }
}
