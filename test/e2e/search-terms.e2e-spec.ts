import request from 'supertest';
import { registerTestClient } from '../support/auth';
import { putAll } from '../support/bundles';
import { FHIR_JSON, hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

const RUN = `terms-${Date.now().toString(36)}`;
const TAG = { system: 'urn:test:run', code: RUN };
const TAG_Q = `_tag=${encodeURIComponent(`urn:test:run|${RUN}`)}`;
const CS = `http://example.org/fhir/CodeSystem/${RUN}`;
const OTHER_CS = `http://example.org/fhir/CodeSystem/${RUN}-other`;
const CATEGORY = 'http://terminology.hl7.org/CodeSystem/observation-category';
const ACT = 'http://terminology.hl7.org/CodeSystem/v3-ActCode';

/** Ids are local to this file: `oA` is stored as `<RUN>-oA`. */
const id = (local: string) => `${RUN}-${local}`;
const q = (s: string) => encodeURIComponent(s);
const ids = (res: request.Response) =>
  (res.body.entry ?? []).filter((e: { search?: { mode: string } }) => e.search?.mode === 'match').map((e: { resource: { id: string } }) => e.resource.id).sort();
const expected = (...locals: string[]) => locals.map(id).sort();
const div = (xhtml: string) => ({ status: 'generated', div: `<div xmlns="http://www.w3.org/1999/xhtml">${xhtml}</div>` });

/**
 * A code system with three levels: A > B (nested) > C (nested), D under B by a `subsumedBy`
 * property, E unrelated, F and G each other's parent (a cycle).
 */
function codeSystem(extraUnderC: { code: string }[] = []) {
  return {
    resourceType: 'CodeSystem',
    id: id('cs'),
    url: CS,
    status: 'active',
    content: 'complete',
    hierarchyMeaning: 'is-a',
    property: [{ code: 'subsumedBy', type: 'code' }, { code: 'parent', type: 'code' }],
    concept: [
      { code: 'A', concept: [{ code: 'B', concept: [{ code: 'C', concept: extraUnderC }] }] },
      { code: 'D', property: [{ code: 'subsumedBy', valueCode: 'B' }] },
      ...(extraUnderC.some((c) => c.code === 'E') ? [] : [{ code: 'E' }]),
      { code: 'F', property: [{ code: 'parent', valueCode: 'G' }] },
      { code: 'G', property: [{ code: 'parent', valueCode: 'F' }] },
    ],
  };
}

function coded(local: string, system: string, code: string) {
  return { resourceType: 'Observation', id: id(local), meta: { tag: [TAG] }, status: 'final', code: { coding: [{ system, code }] } };
}

function texted(local: string, extra: Record<string, unknown>) {
  return { resourceType: 'Observation', id: id(local), meta: { tag: [TAG] }, status: 'final', code: { text: 'scan' }, subject: { reference: `Patient/${id('pt')}` }, ...extra };
}

const laboratory = { category: [{ coding: [{ system: CATEGORY, code: 'laboratory' }] }] };
const vitalSigns = { category: [{ coding: [{ system: CATEGORY, code: 'vital-signs' }] }] };

describe('token :above / :below and _text / _content', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await createTestApp();
    const stored = await putAll(t.api, [
      codeSystem(),
      { resourceType: 'CodeSystem', id: id('cs-other'), url: OTHER_CS, status: 'active', content: 'complete', concept: [{ code: 'B', concept: [{ code: 'C' }] }] },
      coded('oA', CS, 'A'),
      coded('oB', CS, 'B'),
      { ...coded('oC', CS, 'C'), subject: { reference: `Patient/${id('pt')}` } },
      coded('oD', CS, 'D'),
      coded('oE', CS, 'E'),
      coded('oF', CS, 'F'),
      coded('oG', CS, 'G'),
      // Same code, another system: never part of CS's closure.
      coded('oB2', OTHER_CS, 'B'),
      coded('oC2', OTHER_CS, 'C'),
      hiePatient({ id: id('pt') }),
      texted('t1', { text: div('<p>Metastases found in the <b>liver</b></p>'), ...vitalSigns }),
      texted('t2', { text: div('<p>Bone metastases &amp; fractures</p>'), ...vitalSigns }),
      texted('t3', { extension: [{ url: 'http://example.org/fhir/StructureDefinition/note', valueString: 'zebrafish marker' }], ...laboratory }),
      texted('t4', { text: div('Liver function normal'), ...laboratory }),
    ]);
    expect(stored.status).toBe(200);
  });
  afterAll(() => t.close());

  describe('token :below / :above over a stored CodeSystem', () => {
    it.each([
      ['below the root: the code, nested descendants and a subsumedBy child', 'code:below', `${CS}|A`, ['oA', 'oB', 'oC', 'oD']],
      ['below the middle', 'code:below', `${CS}|B`, ['oB', 'oC', 'oD']],
      ['below a leaf: the code itself', 'code:below', `${CS}|C`, ['oC']],
      ['above a leaf: the code and its ancestors', 'code:above', `${CS}|C`, ['oA', 'oB', 'oC']],
      ['above a concept placed by subsumedBy', 'code:above', `${CS}|D`, ['oA', 'oB', 'oD']],
      ['above the root: the code itself', 'code:above', `${CS}|A`, ['oA']],
      ['OR values are a union', 'code:below', `${CS}|C,${CS}|E`, ['oC', 'oE']],
      ['a cycle of parent properties ends', 'code:below', `${CS}|F`, ['oF', 'oG']],
      ['the other code system has its own hierarchy', 'code:below', `${OTHER_CS}|B`, ['oB2', 'oC2']],
    ])('%s', async (_label, param, value, locals) => {
      const res = await t.api.get(`/fhir/Observation?${param}=${q(value)}&${TAG_Q}`);
      expect(res.status).toBe(200);
      expect(ids(res)).toEqual(expected(...locals));
      expect(res.body.total ?? ids(res).length).toBe(locals.length);
    });

    it('works inside a _has clause', async () => {
      const res = await t.api.get(`/fhir/Patient?_has:Observation:subject:code:below=${q(`${CS}|A`)}`);
      expect(res.status).toBe(200);
      expect(ids(res)).toEqual(expected('pt'));
      const none = await t.api.get(`/fhir/Patient?_has:Observation:subject:code:below=${q(`${CS}|D`)}`);
      expect(none.status).toBe(200);
      expect(ids(none)).toEqual([]);
    });

    it.each([
      ['a code system not stored here', `code:below=${q('http://snomed.info/sct|73211009')}`, 'not-supported', 'code:below', /code system http:\/\/snomed\.info\/sct is not stored on this server/],
      ['a code the stored CodeSystem does not define', `code:above=${q(`${CS}|Z`)}`, 'code-invalid', 'code:above', new RegExp(`code Z is not defined in the CodeSystem ${CS}`)],
      ['a code without its system', 'code:below=A', 'invalid', 'code:below', /must be system\|code/],
    ])('%s: 400 %s', async (_label, query, code, expression, diagnostics) => {
      const res = await t.api.get(`/fhir/Observation?${query}`);
      expect(res.status).toBe(400);
      expect(res.body.resourceType).toBe('OperationOutcome');
      expect(res.body.issue[0]).toEqual(expect.objectContaining({ code, expression: [expression] }));
      expect(res.body.issue[0].diagnostics).toMatch(diagnostics);
    });

    it('a CodeSystem update changes the next search', async () => {
      const below = () => t.api.get(`/fhir/Observation?code:below=${q(`${CS}|B`)}&${TAG_Q}`);
      expect(ids(await below())).toEqual(expected('oB', 'oC', 'oD'));
      // E moves under C.
      const put = await t.api.put(`/fhir/CodeSystem/${id('cs')}`).set('Content-Type', FHIR_JSON).send(codeSystem([{ code: 'E' }]));
      expect(put.status).toBe(200);
      expect(ids(await below())).toEqual(expected('oB', 'oC', 'oD', 'oE'));
      const above = await t.api.get(`/fhir/Observation?code:above=${q(`${CS}|E`)}&${TAG_Q}`);
      expect(ids(above)).toEqual(expected('oA', 'oB', 'oC', 'oE'));
      // Back as it was; then a deleted CodeSystem is no longer stored.
      expect((await t.api.put(`/fhir/CodeSystem/${id('cs')}`).set('Content-Type', FHIR_JSON).send(codeSystem())).status).toBe(200);
      expect(ids(await below())).toEqual(expected('oB', 'oC', 'oD'));
      expect((await t.api.delete(`/fhir/CodeSystem/${id('cs-other')}`)).status).toBe(200);
      const gone = await t.api.get(`/fhir/Observation?code:below=${q(`${OTHER_CS}|B`)}`);
      expect(gone.status).toBe(400);
      expect(gone.body.issue[0].code).toBe('not-supported');
      const rows = await t.db.query(`SELECT count(*)::int AS n FROM search_concept WHERE id = $1`, [id('cs-other')]);
      expect(rows[0].n).toBe(0);
    });
  });

  describe('_text and _content (PostgreSQL full text)', () => {
    it.each([
      ['_text: one word in the narrative, any case, tags stripped', `_text=liver`, ['t1', 't4']],
      ['_text: several words must all occur', `_text=${q('liver metastases')}`, ['t1']],
      ['_text: a word inside markup', `_text=fractures`, ['t2']],
      ['_text: a quoted phrase', `_text=${q('"bone metastases"')}`, ['t2']],
      ['_text: OR values', `_text=bone,function`, ['t2', 't4']],
      ['_text: no match', `_text=kidney`, []],
      ['_text: a value only outside the narrative does not match', `_text=zebrafish`, []],
      ['_text with another parameter', `_text=liver&category=laboratory`, ['t4']],
      ['_content: a value inside an extension', `_content=zebrafish`, ['t3']],
      ['_content: the narrative is content too', `_content=metastases`, ['t1', 't2']],
      ['_content: several words across elements', `_content=${q('zebrafish laboratory')}`, ['t3']],
      ['_text:missing=true: resources without a narrative', `_text:missing=true&category=laboratory`, ['t3']],
    ])('%s', async (_label, query, locals) => {
      const res = await t.api.get(`/fhir/Observation?${query}&${TAG_Q}&_total=accurate`);
      expect(res.status).toBe(200);
      expect(ids(res)).toEqual(expected(...locals));
      expect(res.body.total).toBe(locals.length);
    });

    it('index rows follow updates and deletes', async () => {
      const t2 = (await t.api.get(`/fhir/Observation/${id('t2')}`)).body;
      const put = await t.api.put(`/fhir/Observation/${id('t2')}`).set('Content-Type', FHIR_JSON).send({ ...t2, text: div('Kidney cyst') });
      expect(put.status).toBe(200);
      expect(ids(await t.api.get(`/fhir/Observation?_text=bone&${TAG_Q}`))).toEqual([]);
      expect(ids(await t.api.get(`/fhir/Observation?_text=kidney&${TAG_Q}`))).toEqual(expected('t2'));
      expect((await t.api.put(`/fhir/Observation/${id('t2')}`).set('Content-Type', FHIR_JSON).send(t2)).status).toBe(200);
      const rows = await t.db.query(`SELECT count(*)::int AS n FROM search_text WHERE resource_type = 'Observation' AND id = $1`, [id('t2')]);
      expect(rows[0].n).toBe(1);
    });

    it('long base64 values are left out of _content; a narrative too large for one tsvector is cut, not refused', async () => {
      const base64 = Buffer.from('attachment bytes '.repeat(10)).toString('base64');
      const words = Array.from({ length: 70_000 }, (_, i) => `lexeme${String(i).padStart(6, '0')}`);
      const res = await putAll(t.api, [
        texted('big', { text: div(words.join(' ')) }),
        texted('b64', { extension: [{ url: 'http://example.org/fhir/StructureDefinition/blob', valueBase64Binary: base64 }, { url: 'http://example.org/fhir/StructureDefinition/note', valueString: 'blobmarker' }] }),
      ]);
      expect([res.status, res.body.issue?.[0]?.diagnostics]).toEqual([200, undefined]);
      expect(ids(await t.api.get(`/fhir/Observation?_text=lexeme000007&${TAG_Q}`))).toEqual(expected('big'));
      // Past the first 256 KiB of the narrative (~910 KB, under R4's 1 MB for a string): not indexed.
      expect(ids(await t.api.get(`/fhir/Observation?_text=lexeme069999&${TAG_Q}`))).toEqual([]);
      expect(ids(await t.api.get(`/fhir/Observation?_content=blobmarker&${TAG_Q}`))).toEqual(expected('b64'));
      expect(ids(await t.api.get(`/fhir/Observation?_content=${q(base64)}&${TAG_Q}`))).toEqual([]);
      expect((await t.api.delete(`/fhir/Observation/${id('big')}`)).status).toBe(200);
      expect((await t.api.delete(`/fhir/Observation/${id('b64')}`)).status).toBe(200);
      const rows = await t.db.query(`SELECT count(*)::int AS n FROM search_text WHERE id = $1`, [id('big')]);
      expect(rows[0].n).toBe(0);
    });

    it.each([
      ['a string modifier', '_text:exact=liver', 'invalid', '_text:exact', /Unknown modifier :exact on _text/],
      ['sorting by relevance', '_content=liver&_sort=_content', 'invalid', '_sort', /Cannot sort by _content/],
    ])('%s: 400', async (_label, query, code, expression, diagnostics) => {
      const res = await t.api.get(`/fhir/Observation?${query}`);
      expect(res.status).toBe(400);
      expect(res.body.issue[0]).toEqual(expect.objectContaining({ code, expression: [expression] }));
      expect(res.body.issue[0].diagnostics).toMatch(diagnostics);
    });

    it('the CapabilityStatement advertises _text and _content', async () => {
      const cs = await t.api.get('/fhir/metadata');
      const obs = cs.body.rest[0].resource.find((r: { type: string }) => r.type === 'Observation');
      const byName = (name: string) => obs.searchParam.filter((p: { name: string }) => p.name === name);
      expect(byName('_text')).toEqual([{ name: '_text', type: 'string', definition: 'http://hl7.org/fhir/SearchParameter/DomainResource-text' }]);
      expect(byName('_content')).toEqual([{ name: '_content', type: 'string', definition: 'http://hl7.org/fhir/SearchParameter/Resource-content' }]);
    });
  });

  describe('full text under consent and scope queries', () => {
    const ORG_A = `terms-a-${Date.now().toString(36)}`;
    const ORG_B = `terms-b-${Date.now().toString(36)}`;
    let asA: (path: string) => request.Test;
    let asB: (path: string) => request.Test;
    const made: Record<string, string> = {};

    beforeAll(async () => {
      const a = await registerTestClient(t, { role: 'hospital', organization: ORG_A, scopes: ['system/*.cruds'] });
      const b = await registerTestClient(t, { role: 'hospital', organization: ORG_B, scopes: ['system/*.cruds'] });
      const tokenA = await a.token();
      const tokenB = await b.token();
      asA = (path) => request(t.http).get(path).set('Authorization', `Bearer ${tokenA}`);
      asB = (path) => request(t.http).get(path).set('Authorization', `Bearer ${tokenB}`);
      const post = async (type: string, body: Record<string, unknown>) => {
        const res = await request(t.http).post(`/fhir/${type}`).set('Authorization', `Bearer ${tokenA}`).set('Content-Type', FHIR_JSON).send(body);
        if (res.status !== 201) throw new Error(`create ${type}: ${res.status} ${JSON.stringify(res.body)}`);
        return res.body.id as string;
      };
      made.shared = await post('Patient', hiePatient({ name: [{ family: `Shared${RUN}` }] }));
      made.hidden = await post('Patient', hiePatient({ name: [{ family: `Hidden${RUN}` }] }));
      const obs = (patient: string) => ({ resourceType: 'Observation', status: 'final', code: { text: 'note' }, subject: { reference: `Patient/${patient}` }, text: div(`Quokkabite ${RUN}`) });
      made.sharedObs = await post('Observation', obs(made.shared));
      made.hiddenObs = await post('Observation', obs(made.hidden));
      // The hidden patient objects to all sharing (the default policy is opt-out).
      await post('Consent', {
        resourceType: 'Consent',
        status: 'active',
        scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
        category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
        patient: { reference: `Patient/${made.hidden}` },
        dateTime: '2026-01-01T00:00:00Z',
        policyRule: { coding: [{ system: ACT, code: 'OPTOUT' }] },
        provision: { type: 'deny' },
      });
    });

    it("another organization's search does not match the hidden patient's resource", async () => {
      const own = await asA(`/fhir/Observation?_text=quokkabite&_total=accurate`);
      expect(own.status).toBe(200);
      expect(ids(own)).toEqual([made.sharedObs, made.hiddenObs].sort());
      for (const param of ['_text', '_content']) {
        const other = await asB(`/fhir/Observation?${param}=quokkabite&_total=accurate`);
        expect(other.status).toBe(200);
        expect(ids(other)).toEqual([made.sharedObs]);
        expect(other.body.total).toBe(1);
        expect(other.text).not.toContain(made.hiddenObs);
      }
    });

    it('a scope query bounds what full text matches', async () => {
      const lab = await registerTestClient(t, { role: 'hospital', scopes: ['system/Observation.rs?category=laboratory'] });
      const token = await lab.token();
      const res = await request(t.http).get(`/fhir/Observation?_text=liver&${TAG_Q}`).set('Authorization', `Bearer ${token}`);
      expect(res.status).toBe(200);
      expect(ids(res)).toEqual(expected('t4'));
    });

    it('full text cannot itself restrict a scope', async () => {
      const client = await registerTestClient(t, { role: 'hospital', scopes: ['system/Observation.rs?_text=liver'] });
      const token = await client.token().catch((e: Error) => e.message);
      const res = await request(t.http).get(`/fhir/Observation?${TAG_Q}`).set('Authorization', `Bearer ${token}`);
      expect(res.status).toBe(400);
      expect(res.body.issue[0].diagnostics).toMatch(/_text cannot restrict a scope/);
    });
  });
});
