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
  const current: { linked_id: string }[] = await tx.query(
    `SELECT linked_id FROM patient_link_assertion WHERE source = $1 AND patient_id = $2`,
    [source, patientId],
  );
  const before = current.map((c) => c.linked_id).sort();
  if (before.length === linked.length && before.every((b, i) => b === linked[i])) return;
  // Link changes are rare; one at a time, so two transactions rebuilding one linked set never race.
  await tx.query(`SELECT pg_advisory_xact_lock(hashtextextended('patient_link', 0))`);
  await tx.query(`DELETE FROM patient_link_assertion WHERE source = $1 AND $2 IN (patient_id, linked_id)`, [source, patientId]);
  if (linked.length) {
    // Both directions: a link is symmetric (the same person), so the closure walks one index.
    await tx.query(
      `INSERT INTO patient_link_assertion (source, patient_id, linked_id)
       SELECT $1, d.p, d.l FROM unnest($3::text[]) AS x(l), LATERAL (VALUES ($2::text, x.l), (x.l, $2::text)) AS d(p, l)
       ON CONFLICT DO NOTHING`,
      [source, patientId, linked],
    );
  }
  // Every linked set the change may split or join: those of the patient and of its old and new links.
  const [{ affected }]: { affected: string[] }[] = await tx.query(
    `SELECT array_agg(DISTINCT x) AS affected FROM (
       SELECT unnest($1::text[]) AS x
       UNION SELECT l.linked_id FROM patient_link l WHERE l.patient_id = ANY($1::text[])) s`,
    [[patientId, ...before, ...linked]],
  );
  // The patient's new linked set, counted without walking further than the bound.
  const [{ n }]: { n: string }[] = await tx.query(
    `WITH RECURSIVE reach(node) AS (
       SELECT $1::text
       UNION
       SELECT a.linked_id FROM reach r JOIN patient_link_assertion a ON a.patient_id = r.node
     )
     SELECT count(*) AS n FROM (SELECT node FROM reach LIMIT $2) s`,
    [patientId, PATIENT_LINK_MAX + 2],
  );
  if (Number(n) > PATIENT_LINK_MAX + 1) throw tooManyLinks(patientId);
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
