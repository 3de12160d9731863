import { FHIR_JSON, hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

const SYS = 'urn:conditional-race';

/** Eight wordings of "this person": each names a different set of search parameters, all satisfied by `person(n)`. */
function criteriaFor(n: number): string[] {
  const id = `${SYS}|person-${n}`;
  const family = `Racefamily${n}`;
  return [
    `identifier=${id}`,
    `identifier=${id}&_tag=urn:race-tag|intake`,
    `identifier=person-${n}`,
    `family=${family}&birthdate=1971-03-0${n}`,
    `family=${family}&gender=female`,
    `birthdate=1971-03-0${n}&identifier=${id}`,
    `name=${family}&_tag=urn:race-tag|intake`,
    `_tag=urn:race-tag|intake&family=${family}&birthdate=1971-03-0${n}&gender=female`,
  ];
}

function person(n: number): Record<string, unknown> {
  return hiePatient({
    identifier: [{ system: SYS, value: `person-${n}` }],
    name: [{ family: `Racefamily${n}`, given: ['Ida'] }],
    gender: 'female',
    birthDate: `1971-03-0${n}`,
    meta: { tag: [{ system: 'urn:race-tag', code: 'intake' }] },
  });
}

const storedPatients = async (t: TestApp, n: number): Promise<string[]> =>
  (
    await t.db.query<{ id: string }[]>(
      `SELECT r.id FROM resource r WHERE r.resource_type = 'Patient' AND NOT r.deleted AND r.content -> 'identifier' @> $1::jsonb ORDER BY r.id`,
      [JSON.stringify([{ system: SYS, value: `person-${n}` }])],
    )
  ).map((r) => r.id);

/**
 * 16 transaction Bundles at once, each creating person `n` and a Practitioner by ifNoneExist, half
 * naming the Patient first and half the Practitioner: every Bundle must answer 200. Returns the
 * stored ids of both.
 */
async function racingOppositeOrders(t: TestApp, n: number): Promise<{ patients: string[]; practitioners: string[] }> {
  const practitioner = { resourceType: 'Practitioner', identifier: [{ system: SYS, value: `pract-${n}` }], name: [{ family: 'Raceprac' }] };
  const entries = {
    patient: { resource: person(n), request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=${SYS}|person-${n}` } },
    practitioner: { resource: practitioner, request: { method: 'POST', url: 'Practitioner', ifNoneExist: `identifier=${SYS}|pract-${n}` } },
  };
  const bundles = Array.from({ length: 16 }, (_, k) => ({
    resourceType: 'Bundle',
    type: 'transaction',
    entry: k % 2 ? [entries.patient, entries.practitioner] : [entries.practitioner, entries.patient],
  }));
  const results = await Promise.all(bundles.map((b) => t.api.post('/fhir').set('Content-Type', FHIR_JSON).send(b)));
  expect(results.map((r) => r.status)).toEqual(Array(16).fill(200));
  const practitioners: { id: string }[] = await t.db.query(
    `SELECT id FROM resource WHERE resource_type = 'Practitioner' AND NOT deleted AND content -> 'identifier' @> $1::jsonb`,
    [JSON.stringify([{ system: SYS, value: `pract-${n}` }])],
  );
  return { patients: await storedPatients(t, n), practitioners: practitioners.map((p) => p.id) };
}

/**
 * Conditional writes whose differently-worded criteria match the same resource (issue 21 item 7):
 * the criteria text used to be the only lock, so 40 racing conditional creates stored 3 to 7
 * Patients. Whatever the wording, they must store one.
 */
describe('conditional writes racing under different criteria', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  }, 60_000);
  afterAll(() => t.close());

  const stored = (n: number): Promise<string[]> => storedPatients(t, n);

  it('40 concurrent If-None-Exist creates under 8 wordings store exactly 1 Patient; 39 answer 200 with it', async () => {
    const criteria = criteriaFor(1);
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, k) =>
        t.api.post('/fhir/Patient').set('Content-Type', FHIR_JSON).set('If-None-Exist', criteria[k % 8]).send(person(1)),
      ),
    );
    const ids = await stored(1);
    expect(ids).toHaveLength(1);
    const statuses = results.map((r) => r.status).sort();
    expect(statuses).toEqual([...Array(39).fill(200), 201]);
    expect(results.map((r) => r.body.id)).toEqual(Array(40).fill(ids[0]));
    const [{ n }] = await t.db.query(`SELECT count(*)::int AS n FROM resource_history WHERE resource_type = 'Patient' AND id = $1`, [ids[0]]);
    expect(n).toBe(1);
  }, 120_000);

  it('40 concurrent conditional updates (PUT Patient?criteria) under 8 wordings store 1 Patient with 40 versions', async () => {
    const criteria = criteriaFor(2);
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, k) =>
        t.api.put(`/fhir/Patient?${criteria[k % 8]}`).set('Content-Type', FHIR_JSON).send(person(2)),
      ),
    );
    const ids = await stored(2);
    expect(ids).toHaveLength(1);
    expect(results.map((r) => r.status).sort()).toEqual([...Array(39).fill(200), 201]);
    expect(results.map((r) => r.body.id)).toEqual(Array(40).fill(ids[0]));
    const versions: { version_id: number }[] = await t.db.query(
      `SELECT version_id FROM resource_history WHERE resource_type = 'Patient' AND id = $1 ORDER BY version_id`,
      [ids[0]],
    );
    expect(versions.map((v) => v.version_id)).toEqual(Array.from({ length: 40 }, (_, k) => k + 1));
  }, 120_000);

  it('20 concurrent transaction Bundles with ifNoneExist under 8 wordings store 1 Patient, and each Bundle’s Observation points at it', async () => {
    const criteria = criteriaFor(3);
    const bundle = (k: number) => ({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { fullUrl: 'urn:uuid:5d7a9c40-0000-4000-8000-000000000001', resource: person(3), request: { method: 'POST', url: 'Patient', ifNoneExist: criteria[k % 8] } },
        {
          resource: { resourceType: 'Observation', status: 'final', code: { text: `race ${k}` }, subject: { reference: 'urn:uuid:5d7a9c40-0000-4000-8000-000000000001' } },
          request: { method: 'POST', url: 'Observation' },
        },
      ],
    });
    const results = await Promise.all(Array.from({ length: 20 }, (_, k) => t.api.post('/fhir').set('Content-Type', FHIR_JSON).send(bundle(k))));
    expect(results.map((r) => r.status)).toEqual(Array(20).fill(200));
    const ids = await stored(3);
    expect(ids).toHaveLength(1);
    expect(results.map((r) => r.body.entry[0].response.status).sort()).toEqual([...Array(19).fill('200 OK'), '201 Created']);
    const subjects: { subject: string }[] = await t.db.query(
      `SELECT content -> 'subject' ->> 'reference' AS subject FROM resource WHERE resource_type = 'Observation' AND content -> 'code' ->> 'text' LIKE 'race %'`,
    );
    expect(subjects.map((s) => s.subject)).toEqual(Array(20).fill(`Patient/${ids[0]}`));
  }, 120_000);

  it('transaction Bundles taking conditional-create turns of two types in opposite order all succeed, each audited once', async () => {
    const { patients, practitioners } = await racingOppositeOrders(t, 4);
    expect([patients.length, practitioners.length]).toEqual([1, 1]);
    // A rolled-back run's entry records went with its transaction: one committed record per entry per Bundle.
    const audited = async (reference: string): Promise<number> =>
      (await t.db.query(`SELECT count(*)::int AS n FROM audit_event WHERE $1::text = ANY(entities)`, [reference]))[0].n;
    expect([await audited(`Patient/${patients[0]}`), await audited(`Practitioner/${practitioners[0]}`)]).toEqual([16, 16]);
  }, 120_000);
});

/**
 * The same race with no rerun to fall back on: a Bundle takes its types' conditional-create turns
 * in one order (sorted by type), so Bundles naming the types in opposite entry order wait for each
 * other instead of deadlocking. Before, PostgreSQL rolled some back (40P01), which the reruns hid
 * until the full suite's load exhausted them (503).
 */
describe('conditional-create turns of a transaction Bundle, without write-conflict reruns', () => {
  let t: TestApp;
  const previous = process.env.FHIR_WRITE_CONFLICT_RETRIES;
  beforeAll(async () => {
    process.env.FHIR_WRITE_CONFLICT_RETRIES = '0';
    t = await createTestApp();
  }, 60_000);
  afterAll(async () => {
    await t.close();
    if (previous === undefined) delete process.env.FHIR_WRITE_CONFLICT_RETRIES;
    else process.env.FHIR_WRITE_CONFLICT_RETRIES = previous;
  });

  it.each([5, 6, 7])('16 Bundles with the Patient and Practitioner turns in opposite entry orders all answer 200 (person %i)', async (n) => {
    const { patients, practitioners } = await racingOppositeOrders(t, n);
    expect([patients.length, practitioners.length]).toEqual([1, 1]);
  }, 120_000);
});
