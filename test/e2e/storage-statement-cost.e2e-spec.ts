import { ClinicalPeriodPlpgsql1732402400300 } from '../../migrations/1732402400300-clinical-period-plpgsql';
import { ClinicalPeriodDateHelpersPlpgsql1732402400340 } from '../../migrations/1732402400340-clinical-period-date-helpers-plpgsql';
import type { AccessContext } from '../../src/fhir/pipeline/access-context';
import { buildInteraction } from '../../src/fhir/pipeline/interaction';
import type { Principal } from '../../src/fhir/pipeline/principal';
import { SystemAccess } from '../../src/fhir/pipeline/system-access';
import { ResourceRepository } from '../../src/fhir/storage/resource.repository';
import { StorageSessions } from '../../src/fhir/storage/storage-session';
import { FHIR_JSON, hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

/**
 * Issue 21's bench line (docs/performance.md "Where the parent's CPU went"): what a stored
 * version costs PostgreSQL beyond its row. Measured inside one backend as a ratio against the
 * same INSERT without the column, so the machine's load drops out.
 */
describe('what a stored version and a read by key cost PostgreSQL', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t.close());

  it('the generated clinical_period is prepared once per connection, not per INSERT: a row with it costs under 50x a row without it (re-inlined per statement: about 1,000x)', async () => {
    await t.db.transaction(async (tx) => {
      await tx.query(`CREATE TEMP TABLE cost_plain (resource_type text, content jsonb) ON COMMIT DROP`);
      await tx.query(
        `CREATE TEMP TABLE cost_clinical (resource_type text, content jsonb, clinical_period tstzrange GENERATED ALWAYS AS (fhir_clinical_period(resource_type, content)) STORED) ON COMMIT DROP`,
      );
      // One statement per row, as each write stores its version: the generated expression is
      // prepared at the start of every statement, so a multi-row INSERT would hide its cost.
      await tx.query(`
        CREATE FUNCTION pg_temp.insert_ms(clinical boolean, n int) RETURNS float8 LANGUAGE plpgsql AS $$
        DECLARE started timestamptz := clock_timestamp();
                body jsonb := '{"resourceType":"Observation","status":"final","effectiveDateTime":"2024-03-05T10:00:00Z"}';
        BEGIN
          FOR i IN 1..n LOOP
            IF clinical THEN INSERT INTO cost_clinical (resource_type, content) VALUES ('Observation', body);
            ELSE INSERT INTO cost_plain (resource_type, content) VALUES ('Observation', body); END IF;
          END LOOP;
          RETURN extract(epoch FROM clock_timestamp() - started) * 1000;
        END $$`);
      let plain = 0;
      let clinical = 0;
      // Alternating rounds after a warm-up, so both sides see the same load.
      await tx.query(`SELECT pg_temp.insert_ms(true, 20), pg_temp.insert_ms(false, 20)`);
      for (let round = 0; round < 5; round++) {
        const [row]: { c: number; p: number }[] = await tx.query(`SELECT pg_temp.insert_ms(true, 40) AS c, pg_temp.insert_ms(false, 40) AS p`);
        clinical += row.c;
        plain += row.p;
      }
      const [{ n, dated }] = await tx.query(`SELECT count(*)::int AS n, count(clinical_period)::int AS dated FROM cost_clinical`);
      expect([n, dated]).toEqual([220, 220]);
      // Measured: about 5x as a cached plpgsql expression, about 1,000x when re-inlined per statement.
      expect(clinical / plain).toBeLessThan(50);
    });
  });

  // Issue 23: under the PUBHLTH view the referral contributor (TREAT only) used to be rendered with
  // the purpose as a bound value; a custom plan folded it away, a generic plan had to keep its
  // subqueries and cost twice as much, so PostgreSQL planned every read again (8 custom, 0 generic).
  // Now a contributor is left out of the text for purposes it does not serve.
  it('a read by id under the consent predicate is a prepared statement: planned 5 times per connection, then its generic plan (PUBHLTH and TREAT views)', async () => {
    const created = await Promise.all([1, 2].map(() => t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(hiePatient())));
    expect(created.map((c) => c.status)).toEqual([201, 201]);
    const ids = created.map((c) => c.body.id as string);
    const system = t.app.get(SystemAccess);
    const publicHealth = await system.mintFor('PUBHLTH');
    // A treating hospital of another organization, as a client's read by id is authorized and consent-checked.
    const hospital: Principal = { kind: 'client', clientId: 'statement-cost-hospital', organization: 'org-statement-cost', role: 'hospital', scopes: ['system/*.rs'], purposeOfUse: 'TREAT' };
    const treating = await system.mintAs(hospital, buildInteraction('read', { resourceType: 'Patient', id: ids[0], path: `/Patient/${ids[0]}` }), 'statement-cost');
    const repository = t.app.get(ResourceRepository);
    const plansAfterEightReads = async (ctx: AccessContext): Promise<{ answers: (string | undefined)[]; plans: { custom: number; generic: number; consent: boolean }[] }> =>
      t.app.get(StorageSessions).run({ transactional: false }, async (session) => {
        const answers: (string | undefined)[] = [];
        // Two ids, one statement: the values are bound, never part of the text.
        for (let i = 0; i < 8; i++) answers.push((await repository.readCurrent(ctx, 'Patient', ids[i % 2], session.tx))?.id);
        // Unnamed (every call planned), the connection would hold no such statement.
        const plans: { custom: number; generic: number; consent: boolean }[] = await session.tx.query(
          `SELECT custom_plans::int AS custom, generic_plans::int AS generic, statement LIKE '%consent_provision%' AS consent
             FROM pg_prepared_statements WHERE statement LIKE '%FROM resource r%' AND statement LIKE '%r.id = $2%'
            ORDER BY prepare_time DESC LIMIT 1`,
        );
        return { answers, plans };
      });
    // The same answer from the custom and the generic plans: the base policy does not share a
    // hospital's data for PUBHLTH, and shares it for TREAT (opt-out, no Consent on file).
    expect(await plansAfterEightReads(publicHealth)).toEqual({ answers: Array(8).fill(undefined), plans: [{ custom: 5, generic: 3, consent: true }] });
    expect(await plansAfterEightReads(treating)).toEqual({ answers: [0, 1, 0, 1, 0, 1, 0, 1].map((i) => ids[i]), plans: [{ custom: 5, generic: 3, consent: true }] });
  });

  it('the clinical_period date helpers are plpgsql (an SQL function with FROM runs uninlined, ~150 µs a Period) and give the SQL versions\' exact ranges, NULLs included', async () => {
    const dates = [null, '', '2024', '2024-02', '2024-02-29', '2023-02-29', '2019-02-30', '2024-13', '12345', 'abcd', '2024-3-05', '2024-03-05T10:00:00Z',
      '2024-03-05T10:00Z', '2024-03-05T10:00:00.123+05:30', '2024-03-05T10:00:00', '2024-03-05T25:00:00Z', '2024-03-05 10:00:00Z', '\uff12\uff10\uff12\uff14'];
    const periods = [null, '{}', '{"start":"2024"}', '{"end":"2024-03"}', '{"start":"2024-05","end":"2024-03"}', '{"start":"2024-03-05T10:00:00Z","end":"2024-03-05T10:00:00Z"}',
      '{"start":"2024-03-05T10:00:00Z","end":"2024-03-05"}', '{"start":"bad","end":"2024"}', '{"start":5}', '"2024"', '[{"start":"2024"}]'];
    const runner = t.db.createQueryRunner();
    await runner.startTransaction();
    try {
      const state = async (): Promise<{ languages: string[]; dates: (string | null)[]; periods: (string | null)[] }> => {
        const [row] = await runner.query(
          `SELECT (SELECT array_agg(l.lanname::text ORDER BY p.proname) FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang WHERE p.proname IN ('fhir_date_range', 'fhir_period_range')) AS languages,
                  (SELECT array_agg(fhir_date_range(d)::text ORDER BY n) FROM unnest($1::text[]) WITH ORDINALITY AS x(d, n)) AS dates,
                  (SELECT array_agg(fhir_period_range(p::jsonb)::text ORDER BY n) FROM unnest($2::text[]) WITH ORDINALITY AS x(p, n)) AS periods`,
          [dates, periods],
        );
        return row;
      };
      const migration = new ClinicalPeriodDateHelpersPlpgsql1732402400340();
      const now = await state();
      expect(now.languages).toEqual(['plpgsql', 'plpgsql']);
      expect(now.dates.slice(2, 5)).toEqual(['["2024-01-01 00:00:00+00","2025-01-01 00:00:00+00")', '["2024-02-01 00:00:00+00","2024-03-01 00:00:00+00")', '["2024-02-29 00:00:00+00","2024-03-01 00:00:00+00")']);
      expect(now.dates[13]).toBe('["2024-03-05 04:30:00.123+00","2024-03-05 04:30:00.123+00"]');
      expect(now.periods.filter((p) => p !== null)).toHaveLength(5);
      await migration.down(runner);
      const before = await state();
      expect(before.languages).toEqual(['sql', 'sql']);
      expect({ dates: before.dates, periods: before.periods }).toEqual({ dates: now.dates, periods: now.periods });
      await migration.up(runner);
      expect(await state()).toEqual(now);
    } finally {
      await runner.rollbackTransaction();
      await runner.release();
    }
  });

  it('the clinical-period migration is reversible: down gives the SQL function back, up the plpgsql one, with the same periods', async () => {
    const runner = t.db.createQueryRunner();
    await runner.startTransaction();
    try {
      const state = async (): Promise<{ language: string; period: string }> =>
        (
          await runner.query(
            `SELECT (SELECT l.lanname FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang WHERE p.oid = 'fhir_clinical_period(text, jsonb)'::regprocedure) AS language,
                    fhir_clinical_period('Encounter', '{"period":{"start":"2024-03","end":"2024-03-05"}}')::text AS period`,
          )
        )[0];
      const migration = new ClinicalPeriodPlpgsql1732402400300();
      const period = '["2024-03-01 00:00:00+00","2024-03-06 00:00:00+00")';
      expect(await state()).toEqual({ language: 'plpgsql', period });
      await migration.down(runner);
      expect(await state()).toEqual({ language: 'sql', period });
      await migration.up(runner);
      expect(await state()).toEqual({ language: 'plpgsql', period });
    } finally {
      await runner.rollbackTransaction();
      await runner.release();
    }
  });
});
