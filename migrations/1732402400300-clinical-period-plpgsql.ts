import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The same clinical-period mapping (1732402320000), cached instead of re-inlined (issue 21's bench
 * line, docs/performance.md "Where the parent's CPU went"). A generated column's expression is
 * planned at the start of every INSERT/UPDATE that stores it; as a plain SQL function,
 * `fhir_clinical_period` and the ~60 `fhir_date_range` calls in its CASE were parsed and inlined
 * again on each statement: ≈ 2.3 ms of PostgreSQL CPU per row, twice per write (`resource` and
 * `resource_history`). As plpgsql its one expression is planned once per connection and reused.
 *
 * The body is taken from the installed function (`prosrc`: `SELECT CASE … END`), so the mapping
 * stays written once. Stored values are unchanged (same expression), so there is no rewrite.
 */
export class ClinicalPeriodPlpgsql1732402400300 implements MigrationInterface {
  name = 'ClinicalPeriodPlpgsql1732402400300';

  async up(q: QueryRunner): Promise<void> {
    const expression = (await this.body(q)).replace(/^\s*SELECT\s+/i, '');
    await this.replace(q, 'plpgsql', `BEGIN RETURN ${expression}; END`);
  }

  async down(q: QueryRunner): Promise<void> {
    const expression = (await this.body(q)).replace(/^\s*BEGIN\s+RETURN\s+/i, '').replace(/;\s*END\s*$/i, '');
    await this.replace(q, 'sql', `SELECT ${expression}`);
  }

  private async body(q: QueryRunner): Promise<string> {
    const [{ src }]: { src: string }[] = await q.query(`SELECT prosrc AS src FROM pg_proc WHERE oid = 'fhir_clinical_period(text, jsonb)'::regprocedure`);
    return src.trim();
  }

  private async replace(q: QueryRunner, language: 'sql' | 'plpgsql', body: string): Promise<void> {
    // Dollar-quoted with a tag the body cannot contain (it holds only JSON keys and type names).
    await q.query(
      `CREATE OR REPLACE FUNCTION fhir_clinical_period(resource_type text, c jsonb) RETURNS tstzrange LANGUAGE ${language} IMMUTABLE PARALLEL SAFE AS $clinical_period$ ${body} $clinical_period$`,
    );
  }
}
