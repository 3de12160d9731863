import { hiePatient } from '../support/fixtures';
import { postTransaction } from '../support/bundles';
import { createTestApp, TestApp } from '../support/test-app';

const RUN = `cp-${Date.now().toString(36)}`;
const TAG_Q = `_tag=${encodeURIComponent(`urn:test:run|${RUN}`)}`;

/** ContactPoint tokens (telecom, email, phone) match whatever the case of the stored or searched value. */
describe('search: ContactPoint tokens', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
    const patient = (id: string, telecom: unknown[]): unknown => ({
      resource: { ...hiePatient(), id: `${RUN}-${id}`, meta: { tag: [{ system: 'urn:test:run', code: RUN }] }, telecom },
      request: { method: 'PUT', url: `Patient/${RUN}-${id}` },
    });
    const res = await postTransaction(t.api, [
      patient('a', [{ system: 'email', value: 'Anna.Muller@Example.ORG' }, { system: 'phone', value: '+41 44 555 12 12' }]),
      patient('b', [{ system: 'email', value: 'other@example.org' }]),
    ]);
    expect(res.status).toBe(200);
  });
  afterAll(() => t.close());

  it.each([
    ['email as stored', 'email=Anna.Muller@Example.ORG', ['a']],
    ['email in another case', 'email=anna.muller@example.org', ['a']],
    ['telecom system|value, upper case', `telecom=${encodeURIComponent('email|ANNA.MULLER@EXAMPLE.ORG')}`, ['a']],
    ['phone', `phone=${encodeURIComponent('+41 44 555 12 12')}`, ['a']],
    ['email :not', 'email:not=ANNA.MULLER@example.org', ['b']],
  ])('%s', async (_name, query, expected) => {
    const res = await t.api.get(`/fhir/Patient?${query}&${TAG_Q}`).set('Prefer', 'handling=strict');
    expect(res.status).toBe(200);
    expect(res.body.entry.map((e: { resource: { id: string } }) => e.resource.id.slice(RUN.length + 1)).sort()).toEqual(expected);
  });
});
