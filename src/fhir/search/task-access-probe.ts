import type { SqlBinder } from '../pipeline/access-predicate';
import type { JudgedRow, JudgingRequester } from '../pipeline/read-access';

/*
 * SQL probes for access a workflow Task grants (docs/referrals.md, "Referral-scoped access"): the
 * referrals module parameterizes them; the SQL lives here, beside the index tables it reads. Each
 * probe walks reference index rows (search_reference, current versions) from the judged row to the
 * Tasks that name it, then reads each Task's current row by primary key. Index use:
 * search_reference_reverse_idx (target_type, target_id, resource_type, param) from the judged row,
 * search_reference_target_id_idx (resource_type, param, target_id, target_type, id) from a
 * ServiceRequest to its Tasks, search_reference_resource_param_idx (resource_type, id, param) for a
 * Task's owner, requester and patient, and the resource primary key. Aliases start with `tap_`.
 */

/** Which Tasks grant, and while when. */
export interface TaskGrantShape {
  /** The profile a granting Task claims (only those its module's operation created). */
  readonly taskProfile: string;
  /** The ServiceRequest profile of the Task's focus (for the party rule). */
  readonly requestProfile: string;
  /** Task statuses in which the grant holds. */
  readonly openStatuses: readonly string[];
  /** Task statuses after which it holds for `graceDays` from the Task's last update. */
  readonly graceStatuses: readonly string[];
  readonly graceDays: number;
}

/** What a live Task grants, each a subquery selecting the granting Task's id (`tap_t.id`). */
export interface TaskGrantQueries {
  /** The owner reads the Task's patient (demographics) and the resources the focus ServiceRequest names in supportingInfo that the Task's custodian (the requester) holds. */
  ownerReads: string[];
  /** The requester reads the resources the Task names in output that the owner holds. */
  requesterReads: string[];
  /** The owner reads the Task and its focus ServiceRequest themselves (whatever their status). */
  ownerReadsReferral: string[];
}

/** `tap_t` (the Task's current row) is a live granting Task. */
function live(bind: SqlBinder, shape: TaskGrantShape): string {
  const days = Math.max(0, Math.floor(shape.graceDays));
  return `NOT tap_t.deleted AND (tap_t.content #> '{meta,profile}') @> jsonb_build_array(${bind.bind(shape.taskProfile)}::text)
      AND (tap_t.content->>'status' = ANY(${bind.bind(shape.openStatuses)}::text[])
           OR (tap_t.content->>'status' = ANY(${bind.bind(shape.graceStatuses)}::text[]) AND tap_t.last_updated > now() - make_interval(days => ${bind.bind(days)}::int)))`;
}

/** `task` (an id expression) is a referral Task claiming the profile, current and not deleted. */
function claimed(bind: SqlBinder, shape: TaskGrantShape): string {
  return `NOT tap_t.deleted AND (tap_t.content #> '{meta,profile}') @> jsonb_build_array(${bind.bind(shape.taskProfile)}::text)`;
}

/** The Task `task` references `type/id` through `param` (one index probe). */
function taskRefers(task: string, param: string, type: string, id: string): string {
  return `EXISTS (SELECT 1 FROM search_reference tap_r
                   WHERE tap_r.resource_type = 'Task' AND tap_r.id = ${task} AND tap_r.param = '${param}'
                     AND tap_r.target_type = '${type}' AND tap_r.target_id = ${id})`;
}

export function taskGrantQueries(patient: string, row: JudgedRow, requester: JudgingRequester, bind: SqlBinder, shape: TaskGrantShape): TaskGrantQueries {
  const org = requester.organization;
  const task = (from: string, idColumn: string, where: string[]): string =>
    `SELECT tap_t.id FROM ${from} JOIN resource tap_t ON tap_t.resource_type = 'Task' AND tap_t.id = ${idColumn} WHERE ${where.join(' AND ')}`;
  const patientTask = (idColumn: string): string => taskRefers(idColumn, 'patient', 'Patient', patient);
  const ownerReads = [
    // The patient's demographics: the Patient row itself, through the Tasks for that patient.
    task('search_reference tap_p', 'tap_p.id', [
      `${row.resourceType} = 'Patient' AND ${row.id} = ${patient}`,
      `tap_p.target_type = 'Patient' AND tap_p.target_id = ${patient} AND tap_p.resource_type = 'Task' AND tap_p.param = 'patient'`,
      taskRefers('tap_p.id', 'owner', 'Organization', org),
      live(bind, shape),
    ]),
    // The focus ServiceRequest's supportingInfo, where the requester (the Task's custodian) holds it.
    task(
      `search_reference tap_s JOIN search_reference tap_f ON tap_f.resource_type = 'Task' AND tap_f.param = 'focus' AND tap_f.target_id = tap_s.id AND tap_f.target_type = 'ServiceRequest'`,
      'tap_f.id',
      [
        `tap_s.target_type = ${row.resourceType} AND tap_s.target_id = ${row.id} AND tap_s.resource_type = 'ServiceRequest' AND tap_s.param = 'supporting-info'`,
        `tap_t.custodian_org = ${row.custodianOrg}`,
        taskRefers('tap_f.id', 'owner', 'Organization', org),
        patientTask('tap_f.id'),
        live(bind, shape),
      ],
    ),
  ];
  const requesterReads = [
    task('search_reference tap_o', 'tap_o.id', [
      `tap_o.target_type = ${row.resourceType} AND tap_o.target_id = ${row.id} AND tap_o.resource_type = 'Task' AND tap_o.param = 'output-reference'`,
      taskRefers('tap_o.id', 'requester', 'Organization', org),
      // Only what the owner wrote: an output naming someone else's record opens nothing.
      taskRefers('tap_o.id', 'owner', 'Organization', row.custodianOrg),
      patientTask('tap_o.id'),
      live(bind, shape),
    ]),
  ];
  const ownerReadsReferral = [
    `SELECT tap_t.id FROM resource tap_t
      WHERE ${row.resourceType} = 'Task' AND tap_t.resource_type = 'Task' AND tap_t.id = ${row.id}
        AND ${claimed(bind, shape)} AND ${taskRefers('tap_t.id', 'owner', 'Organization', org)} AND ${patientTask('tap_t.id')}`,
    task(`search_reference tap_f`, 'tap_f.id', [
      `${row.resourceType} = 'ServiceRequest' AND tap_f.resource_type = 'Task' AND tap_f.param = 'focus' AND tap_f.target_id = ${row.id} AND tap_f.target_type = 'ServiceRequest'`,
      claimed(bind, shape),
      taskRefers('tap_f.id', 'owner', 'Organization', org),
      patientTask('tap_f.id'),
    ]),
  ];
  return { ownerReads, requesterReads, ownerReadsReferral };
}

/**
 * The party rule for the Task and ServiceRequest of a referral: a row of either type that claims
 * its profile is readable (beyond its custodian, the requester) only by its owner (Task.owner,
 * ServiceRequest.performer). Other rows pass. Judged on the current index rows of the row's id, so
 * every version of a referral is judged alike (its profile claim and parties cannot change).
 */
export function referralPartyCondition(row: JudgedRow, requester: JudgingRequester, bind: SqlBinder, shape: TaskGrantShape): string {
  const profiles = `${bind.bind([shape.taskProfile, shape.requestProfile])}::text[]`;
  return `(${row.resourceType} <> ALL('{Task,ServiceRequest}'::text[])
    OR NOT EXISTS (SELECT 1 FROM search_uri tap_u WHERE tap_u.resource_type = ${row.resourceType} AND tap_u.id = ${row.id} AND tap_u.param = '_profile' AND tap_u.uri = ANY(${profiles}))
    OR EXISTS (SELECT 1 FROM search_reference tap_r
                WHERE tap_r.resource_type = ${row.resourceType} AND tap_r.id = ${row.id}
                  AND tap_r.param = CASE WHEN ${row.resourceType} = 'Task' THEN 'owner' ELSE 'performer' END
                  AND tap_r.target_type = 'Organization' AND tap_r.target_id = ${requester.organization}))`;
}
