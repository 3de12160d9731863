import { Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import type { AccessContext } from '../fhir/pipeline/access-context';
import { Demographics, transposedBirthDate } from './demographics';

/** A stored Patient's demographics as a matching candidate. */
export interface CandidateDemographics extends Demographics {
  patientId: string;
  custodianOrg: string | null;
}

interface Row {
  patient_id: string;
  custodian_org: string | null;
  family: string[];
  given: string[];
  birth_date: string | null;
  sex: string | null;
  postal_codes: string[];
  streets: string[];
  phones: string[];
  emails: string[];
  identifiers: string[];
}

/** Double Metaphone codes of a text[] parameter's words (fuzzystrmatch), empty codes left out. */
const CODES = (param: string): string => `ARRAY(SELECT DISTINCT c FROM unnest(${param}::text[]) w, dmetaphone(w) c WHERE c <> '')`;

/** `family code:given code` for every pair of the two name parts' codes (the composite name key). */
const NAME_CODES = (family: string, given: string): string => `ARRAY(SELECT f || ':' || g FROM unnest(${CODES(family)}) f, unnest(${CODES(given)}) g)`;

const COLUMNS = (alias: string): string =>
  ['patient_id', 'custodian_org', 'family', 'given', 'birth_date', 'sex', 'postal_codes', 'streets', 'phones', 'emails', 'identifiers'].map((c) => `${alias}.${c}`).join(', ');

/**
 * The most candidates one blocking query returns (scored in the app). RANKED_CUT: past it, the
 * Patients sharing more blocking keys (identifier, birth date, name code) are kept first, then by id:
 * at 1M Patients a common name's code alone brings ~220 look-alikes, and a cut by id alone lost the
 * person's own records (24 of 300 `$match` calls of the 1M bench found none).
 */
export const CANDIDATE_LIMIT = 200;

/**
 * `patient_demographics` (migration 1732402400000): identity matching's own index of normalized
 * demographics and blocking keys. Written in the transaction of each Patient write; read only
 * under the named system context `identity-matching` (it holds every organization's patients).
 */
@Injectable()
export class PatientDemographicsRepository {
  async save(tx: EntityManager, patientId: string, custodianOrg: string | null, d: Demographics): Promise<void> {
    await tx.query(
      `INSERT INTO patient_demographics (patient_id, custodian_org, family, given, birth_date, sex, postal_codes, streets, phones, emails, identifiers, family_codes, given_codes, name_codes)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, ${CODES('$3')}, ${CODES('$4')}, ${NAME_CODES('$3', '$4')})
       ON CONFLICT (patient_id) DO UPDATE SET custodian_org = EXCLUDED.custodian_org, family = EXCLUDED.family, given = EXCLUDED.given,
         birth_date = EXCLUDED.birth_date, sex = EXCLUDED.sex, postal_codes = EXCLUDED.postal_codes, streets = EXCLUDED.streets,
         phones = EXCLUDED.phones, emails = EXCLUDED.emails, identifiers = EXCLUDED.identifiers,
         family_codes = EXCLUDED.family_codes, given_codes = EXCLUDED.given_codes, name_codes = EXCLUDED.name_codes`,
      [patientId, custodianOrg, d.family, d.given, d.birthDate ?? null, d.sex ?? null, d.postalCodes, d.streets, d.phones, d.emails, d.identifiers],
    );
  }

  async remove(tx: EntityManager, patientId: string): Promise<void> {
    await tx.query(`DELETE FROM patient_demographics WHERE patient_id = $1`, [patientId]);
  }

  /**
   * Candidates by blocking keys, in SQL (never a scan in the app): a shared identifier, the same
   * birth date or its day/month transposition, or a shared Double Metaphone code of the family name
   * together with one of the given name. Each arm is an index probe; at most CANDIDATE_LIMIT rows.
   */
  async candidates(ctx: AccessContext, tx: EntityManager, d: Demographics, excludeId?: string): Promise<CandidateDemographics[]> {
    if (ctx.system !== 'identity-matching') throw new Error('patient demographics are read under the identity-matching system context only');
    const [sql, params] = candidatesQuery(d, excludeId);
    const rows: Row[] = await tx.query(sql, params);
    return rows.map(toCandidate);
  }

  /**
   * Matching of many Patients at once (the job after write and the batch match): their own rows,
   * then ONE statement for every Patient's blocking candidates at other organizations, found per
   * Patient by exactly the probes of `candidates` (the same arms, the same cut at CANDIDATE_LIMIT by
   * patient id before the organization filter), so scoring them gives what one Patient's match
   * sees. Patients no longer indexed (deleted) are absent from the answer.
   */
  async candidatesOfMany(ctx: AccessContext, tx: EntityManager, patientIds: readonly string[]): Promise<Map<string, { self: CandidateDemographics; candidates: CandidateDemographics[] }>> {
    if (ctx.system !== 'identity-matching') throw new Error('patient demographics are read under the identity-matching system context only');
    const out = new Map<string, { self: CandidateDemographics; candidates: CandidateDemographics[] }>();
    if (!patientIds.length) return out;
    const selves: Row[] = await tx.query(`SELECT ${COLUMNS('d')} FROM patient_demographics d WHERE d.patient_id = ANY($1::text[])`, [[...new Set(patientIds)]]);
    if (!selves.length) return out;
    for (const r of selves) out.set(r.patient_id, { self: toCandidate(r), candidates: [] });
    const [sql, params] = candidatesOfManyQuery([...out.values()].map(({ self }) => self));
    const rows: (Row & { self_id: string })[] = await tx.query(sql, params);
    for (const r of rows) out.get(r.self_id)!.candidates.push(toCandidate(r));
    return out;
  }

  /** The indexed Patients' ids after `after`, in id order (the batch match's pages: a primary-key walk). */
  async patientIdsAfter(ctx: AccessContext, tx: EntityManager, after: string | null, limit: number): Promise<string[]> {
    if (ctx.system !== 'identity-matching') throw new Error('patient demographics are read under the identity-matching system context only');
    const rows: { patient_id: string }[] = await tx.query(
      `SELECT patient_id FROM patient_demographics WHERE patient_id > $1 ORDER BY patient_id LIMIT $2`,
      [after ?? '', limit],
    );
    return rows.map((r) => r.patient_id);
  }

  /** One Patient's row (undefined once it is deleted). */
  async get(ctx: AccessContext, tx: EntityManager, patientId: string): Promise<CandidateDemographics | undefined> {
    if (ctx.system !== 'identity-matching') throw new Error('patient demographics are read under the identity-matching system context only');
    const rows: Row[] = await tx.query(
      `SELECT patient_id, custodian_org, family, given, birth_date, sex, postal_codes, streets, phones, emails, identifiers FROM patient_demographics WHERE patient_id = $1`,
      [patientId],
    );
    return rows.length ? toCandidate(rows[0]) : undefined;
  }
}

/** The blocking query of `candidates` (exported for the benchmark's EXPLAIN of exactly this SQL). */
export function candidatesQuery(d: Demographics, excludeId?: string): [string, unknown[]] {
  const dates = [d.birthDate, transposedBirthDate(d.birthDate)].filter((x): x is string => !!x);
  return [
    `WITH keys AS (SELECT ${NAME_CODES('$3', '$4')} AS name_codes),
       ids AS (
         SELECT patient_id FROM (
                  SELECT patient_id FROM patient_demographics WHERE identifiers && $1::text[]
                  UNION ALL SELECT patient_id FROM patient_demographics WHERE birth_date = ANY($2::text[])
                  UNION ALL SELECT p.patient_id FROM patient_demographics p, keys k WHERE p.name_codes && k.name_codes) u
          WHERE patient_id IS DISTINCT FROM $5
          GROUP BY patient_id
          -- Past the limit, those sharing more keys first (RANKED_CUT).
          ORDER BY count(*) DESC, patient_id
          LIMIT $6
       )
       SELECT p.patient_id, p.custodian_org, p.family, p.given, p.birth_date, p.sex, p.postal_codes, p.streets, p.phones, p.emails, p.identifiers
         FROM ids JOIN patient_demographics p USING (patient_id)
        ORDER BY p.patient_id`,
    [d.identifiers, dates, d.family, d.given, excludeId ?? null, CANDIDATE_LIMIT],
  ];
}

/**
 * The candidates statement of `candidatesOfMany`: per Patient a LATERAL union of the three index
 * probes keyed on its stored blocking keys (identifiers, Double Metaphone codes) and its birth date
 * with the day/month transposition bound beside its id (computed by `transposedBirthDate`), cut like
 * `candidatesQuery`, kept when the candidate's custodian differs from the Patient's.
 */
export function candidatesOfManyQuery(selves: readonly CandidateDemographics[]): [string, unknown[]] {
  return [
    `SELECT s.patient_id AS self_id, ${COLUMNS('c')}
       FROM unnest($1::text[], $2::text[]) AS t(patient_id, transposed)
       JOIN patient_demographics s USING (patient_id)
       CROSS JOIN LATERAL (
         -- The ids are cut first (those sharing more keys first, RANKED_CUT) and their rows fetched
         -- by primary key inside the LATERAL (OFFSET 0 keeps the planner from pulling that join out
         -- into a hash join over every row: 1.3 s a page at 1M Patients).
         SELECT p.* FROM (
                  SELECT u.patient_id FROM (
                           SELECT patient_id FROM patient_demographics WHERE identifiers && s.identifiers
                           UNION ALL SELECT patient_id FROM patient_demographics WHERE birth_date = ANY(ARRAY[s.birth_date, t.transposed])
                           UNION ALL SELECT patient_id FROM patient_demographics WHERE name_codes && s.name_codes) u
                   WHERE u.patient_id <> s.patient_id
                   GROUP BY u.patient_id
                   ORDER BY count(*) DESC, u.patient_id
                   LIMIT $3) ids
           CROSS JOIN LATERAL (SELECT * FROM patient_demographics p WHERE p.patient_id = ids.patient_id OFFSET 0) p) c
      WHERE c.custodian_org IS DISTINCT FROM s.custodian_org`,
    [selves.map((s) => s.patientId), selves.map((s) => transposedBirthDate(s.birthDate) ?? null), CANDIDATE_LIMIT],
  ];
}

function toCandidate(r: Row): CandidateDemographics {
  return {
    patientId: r.patient_id,
    custodianOrg: r.custodian_org,
    family: r.family,
    given: r.given,
    birthDate: r.birth_date ?? undefined,
    sex: r.sex ?? undefined,
    postalCodes: r.postal_codes,
    streets: r.streets,
    phones: r.phones,
    emails: r.emails,
    identifiers: r.identifiers,
  };
}
