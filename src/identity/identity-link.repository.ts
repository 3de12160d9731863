import { Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';

/** One row of `identity_person_link`: which Person a Patient belongs to (one Person per Patient). */
export interface PersonLinkRow {
  patient_id: string;
  person_id: string;
}

/**
 * Every statement on the master patient index's bookkeeping tables (`identity_person_link`,
 * `identity_review`, `identity_no_match`) and its advisory locks, so matching, the admin
 * operations and PIXm share one set of queries (as `PatientDemographicsRepository` owns
 * `patient_demographics`). The Person resources themselves go through `ResourceRepository`.
 * Every method runs in the caller's transaction.
 */
@Injectable()
export class IdentityLinkRepository {
  /** Matching of one person takes turns on its blocking keys; callers pass them in one global order. */
  async lockBlockingKey(tx: EntityManager, key: string): Promise<void> {
    await tx.query(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, [`identity-match:${key}`]);
  }

  /**
   * Many blocking keys in one statement, taken in sorted order (the global order `lockBlockingKey`'s
   * callers keep), so a page of the batch match and a job after write cannot deadlock on them.
   */
  async lockBlockingKeys(tx: EntityManager, keys: readonly string[]): Promise<void> {
    const sorted = [...new Set(keys)].sort();
    if (!sorted.length) return;
    // The subquery's ORDER BY fixes the order in which the aggregate calls the lock function.
    await tx.query(
      `SELECT count(pg_advisory_xact_lock(hashtextextended('identity-match:' || k, 0))) FROM (SELECT k FROM unnest($1::text[]) AS k ORDER BY k COLLATE "C") s`,
      [sorted],
    );
  }

  /** Changes of one Person take turns (its content is read, changed and written). */
  async lockPerson(tx: EntityManager, personId: string): Promise<void> {
    await tx.query(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, [`identity-person:${personId}`]);
  }

  /** The links of these Patients, oldest first (the first names the Person they join). */
  async linksOf(tx: EntityManager, patients: readonly string[]): Promise<PersonLinkRow[]> {
    if (!patients.length) return [];
    return tx.query(`SELECT patient_id, person_id FROM identity_person_link WHERE patient_id = ANY($1::text[]) ORDER BY linked_at, person_id`, [patients]);
  }

  async linkOf(tx: EntityManager, patientId: string): Promise<PersonLinkRow | undefined> {
    const [row]: PersonLinkRow[] = await tx.query(`SELECT patient_id, person_id FROM identity_person_link WHERE patient_id = $1`, [patientId]);
    return row;
  }

  /** Every Patient in a Person with any of `patients`, those included (PIXm's cross-reference). */
  async samePersonAs(tx: EntityManager, patients: readonly string[]): Promise<string[]> {
    const rows: { patient_id: string }[] = await tx.query(
      `SELECT DISTINCT l.patient_id FROM identity_person_link s JOIN identity_person_link l ON l.person_id = s.person_id WHERE s.patient_id = ANY($1::text[])`,
      [patients],
    );
    return rows.map((r) => r.patient_id);
  }

  /** Automatic links after `after`, in id order (the rematch job's pages). */
  async automaticLinksAfter(tx: EntityManager, after: string, limit: number): Promise<PersonLinkRow[]> {
    return tx.query(`SELECT patient_id, person_id FROM identity_person_link WHERE decided_by = 'auto' AND patient_id > $1 ORDER BY patient_id LIMIT $2`, [after, limit]);
  }

  /** An automatic (level3) link, unless the Patient already has a Person: whether it was made. */
  async claimAutomatic(tx: EntityManager, patientId: string, personId: string, score: number | null): Promise<boolean> {
    const claimed: unknown[] = await tx.query(
      `INSERT INTO identity_person_link (patient_id, person_id, assurance, decided_by, score) VALUES ($1, $2, 'level3', 'auto', $3)
       ON CONFLICT (patient_id) DO NOTHING RETURNING patient_id`,
      [patientId, personId, score],
    );
    return claimed.length > 0;
  }

  /** `claimAutomatic` for many Patients in one statement: the Patients it linked (the others already had a Person). */
  async claimAutomaticMany(tx: EntityManager, claims: readonly { patientId: string; personId: string; score: number | null }[]): Promise<Set<string>> {
    if (!claims.length) return new Set();
    const rows: { patient_id: string }[] = await tx.query(
      `INSERT INTO identity_person_link (patient_id, person_id, assurance, decided_by, score)
       SELECT p, s, 'level3', 'auto', sc FROM unnest($1::text[], $2::text[], $3::numeric[]) AS c(p, s, sc)
       ON CONFLICT (patient_id) DO NOTHING RETURNING patient_id`,
      [claims.map((c) => c.patientId), claims.map((c) => c.personId), claims.map((c) => c.score)],
    );
    return new Set(rows.map((r) => r.patient_id));
  }

  /** Drops every link to these Persons (claims of Persons that are not written after all). */
  async releasePersons(tx: EntityManager, personIds: readonly string[]): Promise<void> {
    if (personIds.length) await tx.query(`DELETE FROM identity_person_link WHERE person_id = ANY($1::text[])`, [personIds]);
  }

  /** Admin-confirmed (level4) links, taking the Patients from any Person they were in. */
  async confirm(tx: EntityManager, patients: readonly string[], personId: string, decidedBy: string): Promise<void> {
    if (!patients.length) return;
    await tx.query(
      `INSERT INTO identity_person_link (patient_id, person_id, assurance, decided_by)
       SELECT p, $2, 'level4', $3 FROM unnest($1::text[]) AS p
       ON CONFLICT (patient_id) DO UPDATE SET person_id = EXCLUDED.person_id, assurance = 'level4', decided_by = EXCLUDED.decided_by, score = NULL, linked_at = now()`,
      [patients, personId, decidedBy],
    );
  }

  /** Drops the Person's links to anyone not among `members` (none: all of them). */
  async keepOnly(tx: EntityManager, personId: string, members: readonly string[]): Promise<void> {
    await tx.query(`DELETE FROM identity_person_link WHERE person_id = $1 AND patient_id <> ALL($2::text[])`, [personId, members]);
  }

  /** Drops the Patient's link (to `personId` only, when given: a concurrent relink is kept). */
  async unlinkPatient(tx: EntityManager, patientId: string, personId?: string): Promise<void> {
    if (personId === undefined) await tx.query(`DELETE FROM identity_person_link WHERE patient_id = $1`, [patientId]);
    else await tx.query(`DELETE FROM identity_person_link WHERE patient_id = $1 AND person_id = $2`, [patientId, personId]);
  }

  /** The pairs (`a|b`, a < b) among these that already have a review Task. */
  async reviewedPairs(tx: EntityManager, pairs: readonly (readonly [string, string])[]): Promise<Set<string>> {
    if (!pairs.length) return new Set();
    const rows: { pair: string }[] = await tx.query(
      `SELECT r.patient_id || '|' || r.candidate_id AS pair FROM identity_review r JOIN unnest($1::text[], $2::text[]) AS q(a, b) ON r.patient_id = q.a AND r.candidate_id = q.b`,
      [pairs.map((p) => p[0]), pairs.map((p) => p[1])],
    );
    return new Set(rows.map((r) => r.pair));
  }

  /** Records the review Task of the pair a < b. */
  async recordReview(tx: EntityManager, a: string, b: string, taskId: string, weight: number): Promise<void> {
    await tx.query(`INSERT INTO identity_review (patient_id, candidate_id, task_id, weight) VALUES ($1, $2, $3, $4)`, [a, b, taskId, weight]);
  }

  /** `recordReview` for many pairs (a < b) in one statement: the pairs it recorded (`a|b`; one asked meanwhile is skipped). */
  async recordReviews(tx: EntityManager, reviews: readonly { a: string; b: string; taskId: string; weight: number }[]): Promise<Set<string>> {
    if (!reviews.length) return new Set();
    const rows: { pair: string }[] = await tx.query(
      `INSERT INTO identity_review (patient_id, candidate_id, task_id, weight)
       SELECT a, b, t, w FROM unnest($1::text[], $2::text[], $3::text[], $4::numeric[]) AS r(a, b, t, w)
       ON CONFLICT DO NOTHING RETURNING patient_id || '|' || candidate_id AS pair`,
      [reviews.map((r) => r.a), reviews.map((r) => r.b), reviews.map((r) => r.taskId), reviews.map((r) => r.weight)],
    );
    return new Set(rows.map((r) => r.pair));
  }

  /** Whether an HIE admin declared `patientId` a different person from any of `others` (NO_MATCH). */
  async noMatchWithAny(tx: EntityManager, patientId: string, others: readonly string[]): Promise<boolean> {
    if (!others.length) return false;
    const rows: unknown[] = await tx.query(
      `SELECT 1 FROM identity_no_match
        WHERE (patient_id = $1 AND candidate_id = ANY($2::text[])) OR (candidate_id = $1 AND patient_id = ANY($2::text[])) LIMIT 1`,
      [patientId, others],
    );
    return rows.length > 0;
  }

  /** The NO_MATCH pairs (`a|b`, a < b) among these Patients. */
  async noMatchPairsAmong(tx: EntityManager, patients: readonly string[]): Promise<Set<string>> {
    if (patients.length < 2) return new Set();
    const rows: { pair: string }[] = await tx.query(
      `SELECT patient_id || '|' || candidate_id AS pair FROM identity_no_match WHERE patient_id = ANY($1::text[]) AND candidate_id = ANY($1::text[])`,
      [patients],
    );
    return new Set(rows.map((r) => r.pair));
  }

  /** Keeps "these are NOT the same person" for every pair across the two groups (idempotent). */
  async recordNoMatch(tx: EntityManager, left: readonly string[], right: readonly string[], decidedBy: string): Promise<void> {
    if (!left.length || !right.length) return;
    await tx.query(
      `INSERT INTO identity_no_match (patient_id, candidate_id, decided_by)
       SELECT DISTINCT least(l, r), greatest(l, r), $3 FROM unnest($1::text[]) AS a(l), unnest($2::text[]) AS b(r) WHERE l <> r
       ON CONFLICT DO NOTHING`,
      [left, right, decidedBy],
    );
  }

  /** Withdraws NO_MATCH decisions among these Patients (an admin confirmed they are one person). */
  async forgetNoMatch(tx: EntityManager, patients: readonly string[]): Promise<void> {
    await tx.query(`DELETE FROM identity_no_match WHERE patient_id = ANY($1::text[]) AND candidate_id = ANY($1::text[])`, [patients]);
  }
}
