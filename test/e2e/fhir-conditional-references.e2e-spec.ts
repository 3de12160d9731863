import type request from 'supertest';
import { FHIR_JSON } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

const SYS = 'urn:conditional-references';
const JSON_PATCH = 'application/json-patch+json';
const PARTICIPANT = 'Encounter.participant[0].individual.reference';

/**
 * Conditional references outside a transaction (interoperability issue 24 item 5): batch entries
 * and plain create/update carried `Practitioner?identifier=…` and were stored verbatim, so
 * `_include` and chains found nothing. Every write path resolves them as a transaction does, or
 * answers 412 naming the element, storing nothing.
 */
describe('conditional references in every write path', () => {
  let t: TestApp;
  const ids: Record<string, string> = {};

  const send = (req: request.Test, body: unknown) => req.set('Content-Type', FHIR_JSON).send(body as object);
  const encounter = (value: string, participant = `Practitioner?identifier=${SYS}|pr-1`, extra: Record<string, unknown> = {}) => ({
    resourceType: 'Encounter',
    status: 'finished',
    class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' },
    identifier: [{ system: SYS, value }],
    participant: [{ individual: { reference: participant } }],
    ...extra,
  });
  /** Stored versions of the Encounters carrying an identifier value: what a refused write must not add. */
  const storedVersions = async (value: string): Promise<number> =>
    (
      await t.db.query(`SELECT count(*)::int AS n FROM resource_history WHERE resource_type = 'Encounter' AND content -> 'identifier' @> $1::jsonb`, [
        JSON.stringify([{ system: SYS, value }]),
      ])
    )[0].n;
  const storedReferences = async (id: string): Promise<unknown> =>
    (await t.db.query(`SELECT content -> 'participant' AS p, content -> 'serviceProvider' AS s FROM resource WHERE resource_type = 'Encounter' AND id = $1`, [id]))[0];

  beforeAll(async () => {
    t = await createTestApp();
    const create = async (body: Record<string, unknown>): Promise<string> => {
      const res = await send(t.api.post(`/fhir/${body.resourceType as string}`), body);
      expect(res.status).toBe(201);
      return res.body.id as string;
    };
    ids.practitioner = await create({ resourceType: 'Practitioner', identifier: [{ system: SYS, value: 'pr-1' }], name: [{ family: 'Condref' }] });
    ids.location = await create({ resourceType: 'Location', identifier: [{ system: SYS, value: 'loc-1' }], name: 'Ward Condref' });
    ids.organization = await create({ resourceType: 'Organization', identifier: [{ system: SYS, value: 'org-1' }], name: 'Condref Clinic' });
    await create({ resourceType: 'Organization', identifier: [{ system: SYS, value: 'org-twice' }], name: 'Twin A' });
    await create({ resourceType: 'Organization', identifier: [{ system: SYS, value: 'org-twice' }], name: 'Twin B' });
  }, 60_000);
  afterAll(() => t.close());

  it('create rewrites Practitioner, Location and Organization references, so _include and chains find them', async () => {
    const res = await send(
      t.api.post('/fhir/Encounter'),
      encounter('create-1', undefined, {
        location: [{ location: { reference: `Location?identifier=${SYS}|loc-1` } }],
        serviceProvider: { reference: `Organization?identifier=${SYS}|org-1` },
      }),
    );
    expect(res.status).toBe(201);
    expect([res.body.participant[0].individual.reference, res.body.location[0].location.reference, res.body.serviceProvider.reference]).toEqual([
      `Practitioner/${ids.practitioner}`,
      `Location/${ids.location}`,
      `Organization/${ids.organization}`,
    ]);
    expect(await storedReferences(res.body.id)).toEqual({
      p: [{ individual: { reference: `Practitioner/${ids.practitioner}` } }],
      s: { reference: `Organization/${ids.organization}` },
    });
    const included = await t.api.get(`/fhir/Encounter?_id=${res.body.id}&_include=Encounter:participant`);
    expect(included.body.entry.map((e: { resource: { resourceType: string; id: string } }) => `${e.resource.resourceType}/${e.resource.id}`)).toEqual([
      `Encounter/${res.body.id}`,
      `Practitioner/${ids.practitioner}`,
    ]);
    const chained = await t.api.get(`/fhir/Encounter?participant:Practitioner.identifier=${encodeURIComponent(`${SYS}|pr-1`)}`);
    expect(chained.body.entry.map((e: { resource: { id: string } }) => e.resource.id)).toEqual([res.body.id]);
  });

  it('create answers 412 naming the reference and its element when it matches none or several, and stores nothing', async () => {
    const none = await send(t.api.post('/fhir/Encounter'), encounter('refused-1', `Practitioner?identifier=${SYS}|nobody`));
    expect(none.status).toBe(412);
    expect(none.body.issue).toEqual([
      {
        severity: 'error',
        code: 'not-found',
        diagnostics: `Conditional reference 'Practitioner?identifier=${SYS}|nobody' matches 0 resources; it must match exactly one`,
        expression: [PARTICIPANT],
      },
    ]);
    const several = await send(
      t.api.post('/fhir/Encounter'),
      encounter('refused-1', undefined, { serviceProvider: { reference: `Organization?identifier=${SYS}|org-twice` } }),
    );
    expect(several.status).toBe(412);
    expect(several.body.issue).toEqual([
      {
        severity: 'error',
        code: 'multiple-matches',
        diagnostics: `Conditional reference 'Organization?identifier=${SYS}|org-twice' matches 2 resources; it must match exactly one`,
        expression: ['Encounter.serviceProvider.reference'],
      },
    ]);
    expect(await storedVersions('refused-1')).toBe(0);
  });

  it('an unknown type or bad criteria in a conditional reference is 400 naming the element', async () => {
    const unknown = await send(t.api.post('/fhir/Encounter'), encounter('refused-2', 'Doctor?identifier=x'));
    expect(unknown.status).toBe(400);
    expect(unknown.body.issue[0]).toMatchObject({ code: 'invalid', diagnostics: "Conditional reference to unknown type 'Doctor'", expression: [PARTICIPANT] });
    const badParam = await send(t.api.post('/fhir/Encounter'), encounter('refused-2', 'Practitioner?no-such-param=x'));
    expect(badParam.status).toBe(400);
    expect(badParam.body.issue[0].expression).toEqual([PARTICIPANT]);
    expect(await storedVersions('refused-2')).toBe(0);
  });

  it('update by id resolves; an unresolvable one is 412 and leaves the stored version as it was', async () => {
    const created = await send(t.api.post('/fhir/Encounter'), encounter('update-1', `Practitioner/${ids.practitioner}`));
    const id = created.body.id as string;
    const refused = await send(t.api.put(`/fhir/Encounter/${id}`), { ...encounter('update-1', `Practitioner?identifier=${SYS}|nobody`), id });
    expect([refused.status, refused.body.issue[0].code, refused.body.issue[0].expression]).toEqual([412, 'not-found', [PARTICIPANT]]);
    expect(await storedVersions('update-1')).toBe(1);
    const updated = await send(t.api.put(`/fhir/Encounter/${id}`), {
      ...encounter('update-1'),
      id,
      serviceProvider: { reference: `Organization?identifier=${SYS}|org-1` },
    });
    expect(updated.status).toBe(200);
    expect(await storedReferences(id)).toEqual({
      p: [{ individual: { reference: `Practitioner/${ids.practitioner}` } }],
      s: { reference: `Organization/${ids.organization}` },
    });
  });

  it('conditional create (If-None-Exist) and conditional update resolve the references of what they store', async () => {
    const created = await send(t.api.post('/fhir/Encounter').set('If-None-Exist', `identifier=${SYS}|ccreate-1`), encounter('ccreate-1'));
    expect(created.status).toBe(201);
    expect(created.body.participant[0].individual.reference).toBe(`Practitioner/${ids.practitioner}`);
    const updated = await send(t.api.put(`/fhir/Encounter?identifier=${encodeURIComponent(`${SYS}|ccreate-1`)}`), {
      ...encounter('ccreate-1'),
      serviceProvider: { reference: `Organization?identifier=${SYS}|org-1` },
    });
    expect([updated.status, updated.body.id]).toEqual([200, created.body.id]);
    expect(await storedReferences(created.body.id)).toEqual({
      p: [{ individual: { reference: `Practitioner/${ids.practitioner}` } }],
      s: { reference: `Organization/${ids.organization}` },
    });
    const refused = await send(t.api.put(`/fhir/Encounter?identifier=${encodeURIComponent(`${SYS}|cupdate-none`)}`), encounter('cupdate-none', `Location?identifier=${SYS}|nowhere`));
    expect([refused.status, refused.body.issue[0].expression]).toEqual([412, [PARTICIPANT]]);
    expect(await storedVersions('cupdate-none')).toBe(0);
  });

  it('a PATCH result is resolved like a body sent whole; an unresolvable one changes nothing', async () => {
    const created = await send(t.api.post('/fhir/Encounter'), encounter('patch-1'));
    const id = created.body.id as string;
    const patch = (reference: string) =>
      t.api.patch(`/fhir/Encounter/${id}`).set('Content-Type', JSON_PATCH).send([{ op: 'add', path: '/serviceProvider', value: { reference } }]);
    const refused = await patch(`Organization?identifier=${SYS}|org-twice`);
    expect([refused.status, refused.body.issue[0].code, refused.body.issue[0].expression]).toEqual([412, 'multiple-matches', ['Encounter.serviceProvider.reference']]);
    expect(await storedVersions('patch-1')).toBe(1);
    const patched = await patch(`Organization?identifier=${SYS}|org-1`);
    expect([patched.status, patched.body.meta.versionId, patched.body.serviceProvider.reference]).toEqual([200, '2', `Organization/${ids.organization}`]);
  });

  it('in a batch only the entry whose reference does not resolve fails, with the element named', async () => {
    const res = await send(t.api.post('/fhir'), {
      resourceType: 'Bundle',
      type: 'batch',
      entry: [
        { resource: encounter('batch-1'), request: { method: 'POST', url: 'Encounter' } },
        { resource: encounter('batch-2', `Practitioner?identifier=${SYS}|nobody`), request: { method: 'POST', url: 'Encounter' } },
        { resource: encounter('batch-3', `Location?identifier=${SYS}|loc-1`), request: { method: 'PUT', url: `Encounter?identifier=${SYS}|batch-3` } },
      ],
    });
    expect(res.status).toBe(200);
    expect(res.body.entry.map((e: { response: { status: string } }) => e.response.status)).toEqual(['201 Created', '412', '201 Created']);
    expect(res.body.entry[1].response.outcome.issue[0]).toMatchObject({ code: 'not-found', expression: [PARTICIPANT] });
    const stored = async (value: string) =>
      (
        await t.db.query(`SELECT content -> 'participant' -> 0 -> 'individual' ->> 'reference' AS ref FROM resource WHERE resource_type = 'Encounter' AND content -> 'identifier' @> $1::jsonb`, [
          JSON.stringify([{ system: SYS, value }]),
        ])
      ).map((r: { ref: string }) => r.ref);
    expect([await stored('batch-1'), await stored('batch-2'), await stored('batch-3')]).toEqual([[`Practitioner/${ids.practitioner}`], [], [`Location/${ids.location}`]]);
  });

  it('in a transaction an unresolvable reference fails the Bundle and stores nothing; a resolvable one is rewritten', async () => {
    const bundle = (reference: string) => ({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { resource: encounter('tx-1'), request: { method: 'POST', url: 'Encounter' } },
        { resource: encounter('tx-2', reference), request: { method: 'POST', url: 'Encounter' } },
      ],
    });
    const refused = await send(t.api.post('/fhir'), bundle(`Practitioner?identifier=${SYS}|nobody`));
    expect([refused.status, refused.body.issue[0].code, refused.body.issue[0].expression]).toEqual([
      412,
      'not-found',
      ['Bundle.entry[1].resource.participant[0].individual.reference', 'Bundle.entry[1]'],
    ]);
    expect([await storedVersions('tx-1'), await storedVersions('tx-2')]).toEqual([0, 0]);
    const ok = await send(t.api.post('/fhir'), bundle(`Location?identifier=${SYS}|loc-1`));
    expect(ok.status).toBe(200);
    const rows: { ref: string }[] = await t.db.query(
      `SELECT content -> 'participant' -> 0 -> 'individual' ->> 'reference' AS ref FROM resource WHERE resource_type = 'Encounter' AND content -> 'identifier' @> $1::jsonb`,
      [JSON.stringify([{ system: SYS, value: 'tx-2' }])],
    );
    expect(rows.map((r) => r.ref)).toEqual([`Location/${ids.location}`]);
  });

  it('the CapabilityStatement says conditional references are resolved outside transactions too', async () => {
    const res = await t.api.get('/fhir/metadata');
    expect(res.body.rest[0].documentation).toContain('Conditional references (`Type?criteria`) are resolved in every write');
  });
});
