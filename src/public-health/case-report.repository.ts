import { Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';

/** One report (an episode of one code for one patient), table `case_report`. */
export interface CaseReportRow {
  id: string;
  taskId: string;
  patientId: string;
  codeSystem: string;
  code: string;
  clinicalDate: string;
  reportingOrg: string | null;
  triggerRef: string;
  basis: string;
}

/**
 * The episodes already reported (migration 1732402400260). Callers hold `lockEpisodes` for the
 * patient and code in the same transaction before they look and insert, so the decision
 * "new episode or not" is serialized however many jobs run for one patient at once.
 */
@Injectable()
export class CaseReportRepository {
  /** Held until COMMIT: one decision at a time per patient × code. */
  async lockEpisodes(tx: EntityManager, patientId: string, system: string, code: string): Promise<void> {
    await tx.query(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, [`case-report:${patientId}|${system}|${code}`]);
  }

  /**
   * The report whose episode `clinicalDate` falls in: within `gapDays` of the span of clinical
   * dates already seen for it. Undefined: a new episode.
   */
  async episodeOf(tx: EntityManager, patientId: string, system: string, code: string, clinicalDate: string, gapDays: number): Promise<string | undefined> {
    const rows: { id: string }[] = await tx.query(
      `SELECT id FROM case_report
        WHERE patient_id = $1 AND code_system = $2 AND code = $3
          AND $4::timestamptz BETWEEN first_seen - make_interval(days => $5) AND last_seen + make_interval(days => $5)
        ORDER BY last_seen DESC LIMIT 1`,
      [patientId, system, code, clinicalDate, gapDays],
    );
    return rows[0]?.id;
  }

  /** A qualifying resource of a reported episode widens its span (the gap counts from the latest). */
  async extendEpisode(tx: EntityManager, id: string, clinicalDate: string): Promise<void> {
    await tx.query(`UPDATE case_report SET first_seen = least(first_seen, $2::timestamptz), last_seen = greatest(last_seen, $2::timestamptz) WHERE id = $1`, [id, clinicalDate]);
  }

  async insert(tx: EntityManager, r: CaseReportRow): Promise<void> {
    await tx.query(
      `INSERT INTO case_report (id, task_id, patient_id, code_system, code, first_seen, last_seen, reporting_org, trigger_ref, basis)
       VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9)`,
      [r.id, r.taskId, r.patientId, r.codeSystem, r.code, r.clinicalDate, r.reportingOrg, r.triggerRef, r.basis],
    );
  }
}
