import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Two probes of the consent predicate as functions (docs/performance.md, "Mix CPU back to the
 * parent"): the provision.code probe of the row's token index and the Person-link probe of a linked
 * record's permit. Written inline, each was an EXISTS sub-select that PostgreSQL planned in every
 * statement carrying the predicate (twice: the patient and the sensitive-label conditions), about
 * 0.2 ms of planning per search, although they run only for a patient with a coded provision or a
 * linked record's permit. As plpgsql their plans are made once per connection and reused; the
 * outer statement plans a function call. Same conditions, same index (search_token_code_id_idx,
 * patient_link's primary key).
 */
export class ConsentProbeFunctions1732402400370 implements MigrationInterface {
  name = 'ConsentProbeFunctions1732402400370';

  async up(q: QueryRunner): Promise<void> {
    // The row's `code` token index holds this Coding (no system in the provision: any system).
    await q.query(`
      CREATE FUNCTION consent_code_indexed(row_type text, row_id text, code_system text, code text) RETURNS boolean
        LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
        BEGIN
          RETURN EXISTS (SELECT 1 FROM search_token t
                          WHERE t.resource_type = row_type AND t.param = 'code' AND t.code = consent_code_indexed.code AND t.id = row_id
                            AND (code_system IS NULL OR t.system = code_system));
        END $$`);
    // Person links alone join the two records (a linked record's permit counts only then).
    await q.query(`
      CREATE FUNCTION consent_linked_via_person(patient text, linked text) RETURNS boolean
        LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
        BEGIN
          RETURN EXISTS (SELECT 1 FROM patient_link l WHERE l.patient_id = patient AND l.linked_id = linked AND l.via_person);
        END $$`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP FUNCTION consent_linked_via_person(text, text)`);
    await q.query(`DROP FUNCTION consent_code_indexed(text, text, text, text)`);
  }
}
