import { Injectable, OnModuleInit } from '@nestjs/common';
import type { Patient } from '@medplum/fhirtypes';
import type { EntityManager } from 'typeorm';
import { FhirError } from '../common/fhir-error';
import { WriteEvent, WriteEvents, WriteListener } from '../fhir/pipeline/write-events';

/** The most Patient records one person's linked set may hold (a write that would exceed it is refused). */
export const PATIENT_LINK_MAX = 100;
const PATIENT_REF_RE = /^Patient\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[A-Za-z0-9\-.]{1,64})?$/;

/** The other Patient records a Patient says are the same person (every R4 link type means that). */
export function linkedPatientIds(patient: Patient): string[] {
  const ids = new Set<string>();
  for (const link of Array.isArray(patient.link) ? patient.link : []) {
    const m = PATIENT_REF_RE.exec(link?.other?.reference ?? '');
    if (m && m[1] !== patient.id) ids.add(m[1]);
  }
  return [...ids].sort();
}

/**
 * Keeps the linked-record tables in step with `Patient.link` (docs/consent.md, Linked records), in
 * the transaction of every Patient write (a pre-commit write listener): the Patient's own assertions (source `Patient/{id}`) are
 * replaced, then the closure (`patient_link`) of every linked set the change touches is rebuilt, so
 * the next request's consent predicate sees it. Other sources (the identity module's Person links)
 * feed the same assertion table through `relink`.
 */
@Injectable()
export class PatientLinkMaterializer implements WriteListener, OnModuleInit {
  readonly name = 'patient-links';
  readonly phase = 'pre-commit' as const;
  readonly order = 200;
  readonly resourceTypes = ['Patient'];

  constructor(private readonly events: WriteEvents) {}

  onModuleInit(): void {
    this.events.register(this);
  }

  async handle({ tx, id, after, before }: WriteEvent): Promise<void> {
    const linked = after ? linkedPatientIds({ ...(after as Patient), id }) : [];
    // A new Patient without links asserts nothing and had nothing to withdraw: no statement at all.
    if (!before && !linked.length) return;
    if (linked.length > PATIENT_LINK_MAX) throw tooManyLinks(id);
    await relink(tx, `Patient/${id}`, id, linked);
  }
}

/**
 * Replaces what `source` asserts about `patientId` (the records it says are the same person) and
 * rebuilds the closure of every linked set involved. Bounded: a linked set may hold at most
 * PATIENT_LINK_MAX + 1 records (422 otherwise), so each rebuild visits at most a few hundred rows.
 */
export async function relink(tx: EntityManager, source: string, patientId: string, linked: readonly string[]): Promise<void> {
  await relinkMany(tx, [{ source, patientId, linked }]);
}

/** What one source asserts about one Patient: the other records of its person. */
export interface LinkStar {
  source: string;
  patientId: string;
  linked: readonly string[];
}

/**
 * `relink` for many sources at once (the identity module's batch match writes a page's new Persons
 * together): one read of what they asserted, one delete, one insert and one closure rebuild for all
 * of them, instead of seven statements each. No two stars share a (source, patient) pair.
 */
export async function relinkMany(tx: EntityManager, stars: readonly LinkStar[]): Promise<void> {
  if (!stars.length) return;
  const current: { source: string; patient_id: string; linked_id: string }[] = await tx.query(
    `SELECT a.source, a.patient_id, a.linked_id FROM patient_link_assertion a
       JOIN unnest($1::text[], $2::text[]) AS s(source, patient_id) USING (source, patient_id)`,
    [stars.map((s) => s.source), stars.map((s) => s.patientId)],
  );
  const before = new Map<string, string[]>();
  for (const c of current) before.set(`${c.source}|${c.patient_id}`, [...(before.get(`${c.source}|${c.patient_id}`) ?? []), c.linked_id]);
  const changed = stars
    .map((s) => ({ ...s, linked: [...s.linked].sort(), before: (before.get(`${s.source}|${s.patientId}`) ?? []).sort() }))
    .filter((s) => s.before.length !== s.linked.length || s.before.some((b, i) => b !== s.linked[i]));
  if (!changed.length) return;
  // Link changes are rare; one at a time, so two transactions rebuilding one linked set never race.
  await tx.query(`SELECT pg_advisory_xact_lock(hashtextextended('patient_link', 0))`);
  await tx.query(
    `DELETE FROM patient_link_assertion a USING unnest($1::text[], $2::text[]) AS s(source, patient_id)
      WHERE a.source = s.source AND s.patient_id IN (a.patient_id, a.linked_id)`,
    [changed.map((s) => s.source), changed.map((s) => s.patientId)],
  );
  const pairs = changed.flatMap((s) => s.linked.map((l) => [s.source, s.patientId, l] as const));
  if (pairs.length) {
    // Both directions: a link is symmetric (the same person), so the closure walks one index.
    await tx.query(
      `INSERT INTO patient_link_assertion (source, patient_id, linked_id)
       SELECT x.source, d.p, d.l FROM unnest($1::text[], $2::text[], $3::text[]) AS x(source, centre, l),
              LATERAL (VALUES (x.centre, x.l), (x.l, x.centre)) AS d(p, l)
       ON CONFLICT DO NOTHING`,
      [pairs.map((p) => p[0]), pairs.map((p) => p[1]), pairs.map((p) => p[2])],
    );
  }
  // Every linked set the change may split or join: those of the patients and of their old and new links.
  const touched = [...new Set(changed.flatMap((s) => [s.patientId, ...s.before, ...s.linked]))];
  const [{ affected }]: { affected: string[] }[] = await tx.query(
    `SELECT array_agg(DISTINCT x) AS affected FROM (
       SELECT unnest($1::text[]) AS x
       UNION SELECT l.linked_id FROM patient_link l WHERE l.patient_id = ANY($1::text[])) s`,
    [touched],
  );
  // Each patient's new linked set, counted without walking further than the bound.
  const over: { patient_id: string }[] = await tx.query(
    `SELECT c.patient_id FROM unnest($1::text[]) AS c(patient_id)
      WHERE (WITH RECURSIVE reach(node) AS (
               SELECT c.patient_id
               UNION
               SELECT a.linked_id FROM reach r JOIN patient_link_assertion a ON a.patient_id = r.node
             )
             SELECT count(*) FROM (SELECT node FROM reach LIMIT $2) s) > $3`,
    [changed.map((s) => s.patientId), PATIENT_LINK_MAX + 2, PATIENT_LINK_MAX + 1],
  );
  if (over.length) throw tooManyLinks(over[0].patient_id);
  await tx.query(`DELETE FROM patient_link WHERE patient_id = ANY($1::text[])`, [affected]);
  // via_person: the pair is joined by Person links alone (MPI-certain or admin-confirmed), so
  // permits follow it too; a path through a hospital's own Patient.link carries denials only.
  await tx.query(
    `WITH RECURSIVE reach(origin, node) AS (
       SELECT x, x FROM unnest($1::text[]) AS x
       UNION
       SELECT r.origin, a.linked_id FROM reach r JOIN patient_link_assertion a ON a.patient_id = r.node
     ), person_reach(origin, node) AS (
       SELECT x, x FROM unnest($1::text[]) AS x
       UNION
       SELECT r.origin, a.linked_id FROM person_reach r JOIN patient_link_assertion a ON a.patient_id = r.node AND a.source LIKE 'Person/%'
     )
     INSERT INTO patient_link (patient_id, linked_id, via_person)
     SELECT r.origin, r.node, EXISTS (SELECT 1 FROM person_reach p WHERE p.origin = r.origin AND p.node = r.node)
       FROM reach r WHERE r.origin <> r.node`,
    [affected],
  );
}

function tooManyLinks(patientId: string): FhirError {
  return new FhirError(
    422,
    'business-rule',
    `Patient/${patientId}: a person's linked Patient records may number at most ${PATIENT_LINK_MAX + 1}`,
    ['Patient.link'],
  );
}
