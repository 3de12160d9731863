import { parseFhirXml } from '../../src/common/fhir-xml';
import { FHIR_JSON } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

const FHIR_XML = 'application/fhir+xml';
const XML_TYPE = 'application/fhir+xml; charset=utf-8';
const PRECISE = '0.1000000000000000055';

const patientXml = (id?: string, family = 'Müller') =>
  `<?xml version="1.0" encoding="UTF-8"?>
<Patient xmlns="http://hl7.org/fhir">
  ${id ? `<id value="${id}"/>` : ''}
  <text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml"><p>Anna &amp; <b>Lena</b></p></div></text>
  <identifier><system value="http://hospital-a.example.org/mrn"/><value value="MRN-X1"/></identifier>
  <name><family value="${family}"/><given value="Anna"/><given><extension url="http://hl7.org/fhir/StructureDefinition/iso21090-EN-qualifier"><valueCode value="CL"/></extension></given></name>
  <gender value="female"/>
  <birthDate value="1980-04-01"><extension url="http://hl7.org/fhir/StructureDefinition/patient-birthTime"><valueDateTime value="1980-04-01T10:15:00+01:00"/></extension></birthDate>
</Patient>`;

/**
 * FHIR XML (R4 xml.html) on every interaction: request bodies become FHIR JSON in the middleware,
 * responses and errors are written in the negotiated format.
 */
describe('FHIR XML', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t.close());

  async function storedContent(type: string, id: string): Promise<string> {
    const [row] = await t.db.query(`SELECT content::text AS content FROM resource WHERE resource_type = $1 AND id = $2`, [type, id]);
    return row?.content;
  }

  async function createPatientXml(): Promise<string> {
    const res = await t.api.post('/fhir/Patient').set('Content-Type', FHIR_XML).set('Accept', FHIR_XML).send(patientXml());
    expect(res.status).toBe(201);
    return /<id value="([^"]+)"\/>/.exec(res.text)![1];
  }

  it('create takes an XML body and answers in XML; primitive extensions and the narrative are stored as FHIR JSON', async () => {
    const res = await t.api.post('/fhir/Patient').set('Content-Type', FHIR_XML).set('Accept', FHIR_XML).send(patientXml());
    expect(res.status).toBe(201);
    expect(res.headers['content-type']).toBe(XML_TYPE);
    expect(res.headers.vary).toMatch(/Accept/);
    expect(res.text.startsWith('<?xml version="1.0" encoding="UTF-8"?><Patient xmlns="http://hl7.org/fhir"><id value="')).toBe(true);
    const id = /<id value="([^"]+)"\/>/.exec(res.text)![1];
    expect(res.headers.location).toMatch(new RegExp(`/fhir/Patient/${id}/_history/1$`));
    const json = (await t.api.get(`/fhir/Patient/${id}`).set('Accept', FHIR_JSON)).body;
    expect(json.name).toEqual([{ family: 'Müller', given: ['Anna', null], _given: [null, { extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/iso21090-EN-qualifier', valueCode: 'CL' }] }] }]);
    expect(json._birthDate).toEqual({ extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/patient-birthTime', valueDateTime: '1980-04-01T10:15:00+01:00' }] });
    expect(json.text.div).toBe('<div xmlns="http://www.w3.org/1999/xhtml"><p>Anna &amp; <b>Lena</b></p></div>');
    expect(await storedContent('Patient', id)).toContain('"_given": [null, {"extension"');
    // The XML read gives back what the JSON read does.
    const xmlRead = await t.api.get(`/fhir/Patient/${id}`).set('Accept', FHIR_XML);
    expect(xmlRead.status).toBe(200);
    expect(xmlRead.headers.etag).toBe('W/"1"');
    expect(parseFhirXml(xmlRead.text)).toEqual(json);
  });

  it('_format=xml (and its MIME type forms) win over Accept; Accept follows q-values; fhirVersion parameters are allowed', async () => {
    const id = await createPatientXml();
    for (const format of ['xml', 'application/fhir+xml', 'text/xml', 'application/xml']) {
      const res = await t.api.get(`/fhir/Patient/${id}?_format=${encodeURIComponent(format)}`).set('Accept', FHIR_JSON);
      expect([format, res.status, res.headers['content-type']]).toEqual([format, 200, XML_TYPE]);
    }
    const preferXml = await t.api.get(`/fhir/Patient/${id}`).set('Accept', 'application/fhir+json;q=0.5, application/fhir+xml');
    expect(preferXml.headers['content-type']).toBe(XML_TYPE);
    const versioned = await t.api.get(`/fhir/Patient/${id}`).set('Accept', 'application/fhir+json; fhirVersion=4.0');
    expect([versioned.status, versioned.headers['content-type']]).toEqual([200, 'application/fhir+json; charset=utf-8']);
    const any = await t.api.get(`/fhir/Patient/${id}`).set('Accept', '*/*');
    expect(any.headers['content-type']).toBe('application/fhir+json; charset=utf-8');
    const pretty = await t.api.get(`/fhir/Patient/${id}?_format=xml&_pretty=true`);
    expect(pretty.text).toContain('\n  <id value=');
  });

  it('keeps every digit of a decimal sent in XML, in storage and in the XML read', async () => {
    const body = `<Observation xmlns="http://hl7.org/fhir"><status value="final"/><code><coding><system value="http://loinc.org"/><code value="2345-7"/></coding></code>
      <valueQuantity><value value="${PRECISE}"/><unit value="mg"/><system value="http://unitsofmeasure.org"/><code value="mg"/></valueQuantity>
      <component><code><text value="c"/></code><valueQuantity><value value="1.50"/></valueQuantity></component></Observation>`;
    const res = await t.api.post('/fhir/Observation').set('Content-Type', FHIR_XML).send(body);
    expect(res.status).toBe(201);
    expect(res.headers['content-type']).toBe('application/fhir+json; charset=utf-8');
    expect(res.text).toContain(`"value":${PRECISE},`);
    expect(await storedContent('Observation', res.body.id)).toContain(`"value": ${PRECISE}`);
    const xml = (await t.api.get(`/fhir/Observation/${res.body.id}?_format=xml`)).text;
    expect(xml).toContain(`<valueQuantity><value value="${PRECISE}"/>`);
    expect(xml).toContain('<valueQuantity><value value="1.50"/></valueQuantity>');
  });

  it('update and search in XML: a searchset Bundle wraps each resource in <resource>', async () => {
    const id = await createPatientXml();
    const put = await t.api.put(`/fhir/Patient/${id}`).set('Content-Type', 'application/xml').set('Accept', 'text/xml').send(patientXml(id, 'Xmlupdated'));
    expect([put.status, put.headers.etag]).toEqual([200, 'W/"2"']);
    expect(put.text).toContain('<family value="Xmlupdated"/>');
    const search = await t.api.get('/fhir/Patient?family=Xmlupdated&_format=xml');
    expect(search.status).toBe(200);
    expect(search.text).toContain('<Bundle xmlns="http://hl7.org/fhir">');
    const bundle = parseFhirXml(search.text) as { type: string; entry: { resource: { id: string; resourceType: string } }[] };
    expect(bundle.type).toBe('searchset');
    expect(bundle.entry.map((e) => [e.resource.resourceType, e.resource.id])).toEqual([['Patient', id]]);
    expect(search.text).toContain(`<resource><Patient><id value="${id}"/>`);
  });

  it('FHIRPath Patch Parameters in XML, history and delete answer in XML', async () => {
    const id = await createPatientXml();
    const patch = `<Parameters xmlns="http://hl7.org/fhir"><parameter><name value="operation"/>
      <part><name value="type"/><valueCode value="replace"/></part>
      <part><name value="path"/><valueString value="Patient.gender"/></part>
      <part><name value="value"/><valueCode value="male"/></part></parameter></Parameters>`;
    const patched = await t.api.patch(`/fhir/Patient/${id}`).set('Content-Type', FHIR_XML).set('Accept', FHIR_XML).send(patch);
    expect([patched.status, patched.headers.etag]).toEqual([200, 'W/"2"']);
    expect(patched.text).toContain('<gender value="male"/>');
    const history = await t.api.get(`/fhir/Patient/${id}/_history?_format=xml`);
    const bundle = parseFhirXml(history.text) as { type: string; entry: { resource: { meta: { versionId: string } } }[] };
    expect([bundle.type, bundle.entry.map((e) => e.resource.meta.versionId)]).toEqual(['history', ['2', '1']]);
    const deleted = await t.api.delete(`/fhir/Patient/${id}`).set('Accept', FHIR_XML);
    expect([deleted.status, deleted.headers['content-type']]).toEqual([200, XML_TYPE]);
    expect(deleted.text).toContain('<OperationOutcome xmlns="http://hl7.org/fhir"><issue><severity value="information"/>');
  });

  it('a transaction Bundle in XML commits and answers a transaction-response in XML', async () => {
    const body = `<Bundle xmlns="http://hl7.org/fhir"><type value="transaction"/>
      <entry><fullUrl value="urn:uuid:5b0c3e0e-2c1a-4a41-9c8e-9d5c1e7a0001"/><resource>${patientXml().replace(/<\?xml[^>]*>/, '').replace(' xmlns="http://hl7.org/fhir"', '')}</resource>
        <request><method value="POST"/><url value="Patient"/></request></entry>
      <entry><resource><Observation><status value="final"/><code><text value="weight"/></code><subject><reference value="urn:uuid:5b0c3e0e-2c1a-4a41-9c8e-9d5c1e7a0001"/></subject>
        <valueQuantity><value value="72.50"/></valueQuantity></Observation></resource><request><method value="POST"/><url value="Observation"/></request></entry>
    </Bundle>`;
    const res = await t.api.post('/fhir').set('Content-Type', FHIR_XML).set('Accept', FHIR_XML).send(body);
    expect(res.status).toBe(200);
    const out = parseFhirXml(res.text) as { type: string; entry: { response: { status: string; location: string } }[] };
    expect(out.type).toBe('transaction-response');
    expect(out.entry.map((e) => e.response.status)).toEqual(['201 Created', '201 Created']);
    const patientId = /Patient\/([^/]+)\/_history/.exec(out.entry[0].response.location)![1];
    const obsId = /Observation\/([^/]+)\/_history/.exec(out.entry[1].response.location)![1];
    expect(await storedContent('Observation', obsId)).toContain(`"reference": "Patient/${patientId}"`);
    expect(await storedContent('Observation', obsId)).toContain('"value": 72.50');
  });

  it('a batch answered in XML carries a failed entry\'s OperationOutcome wrapped in <outcome>', async () => {
    const body = `<Bundle xmlns="http://hl7.org/fhir"><type value="batch"/>
      <entry><request><method value="GET"/><url value="Patient/no-such-patient"/></request></entry></Bundle>`;
    const res = await t.api.post('/fhir').set('Content-Type', FHIR_XML).set('Accept', FHIR_XML).send(body);
    expect(res.status).toBe(200);
    expect(res.text).toMatch(/<response><status value="404[^"]*"\/><outcome><OperationOutcome><issue><severity value="error"\/><code value="not-found"\/>/);
  });

  it('$validate takes an XML resource and answers an XML OperationOutcome', async () => {
    const res = await t.api
      .post('/fhir/Patient/$validate')
      .set('Content-Type', FHIR_XML)
      .set('Accept', FHIR_XML)
      .send('<Patient xmlns="http://hl7.org/fhir"><gender value="nonsense"/></Patient>');
    expect(res.headers['content-type']).toBe(XML_TYPE);
    const outcome = parseFhirXml(res.text) as { resourceType: string; issue: { code: string; expression?: string[] }[] };
    expect(outcome.resourceType).toBe('OperationOutcome');
    expect(outcome.issue.some((i) => i.expression?.includes('Patient.gender'))).toBe(true);
  });

  it('errors are OperationOutcomes in XML; a bad XML body is 400 naming where and stores nothing', async () => {
    const missing = await t.api.get('/fhir/Patient/does-not-exist').set('Accept', FHIR_XML);
    expect([missing.status, missing.headers['content-type']]).toEqual([404, XML_TYPE]);
    expect(missing.text).toMatch(/^<\?xml version="1.0" encoding="UTF-8"\?><OperationOutcome xmlns="http:\/\/hl7.org\/fhir"><issue><severity value="error"\/><code value="not-found"\/>/);

    const [{ count: before }] = await t.db.query(`SELECT count(*)::int AS count FROM resource WHERE resource_type = 'Patient'`);
    const unknown = await t.api
      .post('/fhir/Patient')
      .set('Content-Type', FHIR_XML)
      .set('Accept', FHIR_XML)
      .send('<Patient xmlns="http://hl7.org/fhir"><name><nickname value="x"/></name></Patient>');
    expect(unknown.status).toBe(400);
    expect(parseFhirXml(unknown.text)).toEqual({
      resourceType: 'OperationOutcome',
      issue: [{ severity: 'error', code: 'structure', diagnostics: '<nickname> is not an element of Patient.name', expression: ['Patient.name.nickname'] }],
    });
    const broken = await t.api.post('/fhir/Patient').set('Content-Type', FHIR_XML).send('<Patient xmlns="http://hl7.org/fhir"><name></Patient>');
    expect([broken.status, broken.body.issue[0].code]).toEqual([400, 'structure']);
    expect(broken.body.issue[0].diagnostics).toMatch(/^The request body is not well-formed XML \(line 1, column \d+\)$/);
    const dtd = await t.api
      .post('/fhir/Patient')
      .set('Content-Type', FHIR_XML)
      .send('<!DOCTYPE p [<!ENTITY e "x">]><Patient xmlns="http://hl7.org/fhir"><gender value="&e;"/></Patient>');
    expect([dtd.status, dtd.body.issue[0].diagnostics]).toEqual([400, 'The XML body has a DOCTYPE; FHIR XML must not use DTDs']);
    const proto = await t.api.post('/fhir/Patient').set('Content-Type', FHIR_XML).send('<Patient xmlns="http://hl7.org/fhir"><__proto__ value="x"/></Patient>');
    expect([proto.status, proto.body.issue[0].code]).toEqual([400, 'structure']);
    const wrongType = await t.api.post('/fhir/Patient').set('Content-Type', FHIR_XML).send('<Observation xmlns="http://hl7.org/fhir"><status value="final"/></Observation>');
    expect(wrongType.status).toBe(400);
    const [{ count: after }] = await t.db.query(`SELECT count(*)::int AS count FROM resource WHERE resource_type = 'Patient'`);
    expect(after).toBe(before);
  });

  it('a 401 without a token is an XML OperationOutcome when XML was asked for', async () => {
    const { default: request } = await import('supertest');
    const res = await request(t.http).get('/fhir/Patient').set('Accept', FHIR_XML);
    expect([res.status, res.headers['content-type']]).toEqual([401, XML_TYPE]);
    expect(res.text).toContain('<code value="login"/>');
  });

  it('lists XML in CapabilityStatement.format and serves the CapabilityStatement as XML', async () => {
    const json = await t.api.get('/fhir/metadata');
    expect(json.body.format).toEqual(['application/fhir+json', 'json', 'application/fhir+xml', 'xml']);
    const xml = await t.api.get('/fhir/metadata?_format=xml');
    expect(xml.status).toBe(200);
    expect(parseFhirXml(xml.text)).toEqual(JSON.parse(JSON.stringify(json.body)));
  });

  it('other media types are still refused: 406 for Accept or _format, 415 for a body, JSON-only outside the FHIR base', async () => {
    const csv = await t.api.get('/fhir/Patient').set('Accept', 'text/csv');
    expect([csv.status, csv.body.issue[0].code, csv.body.issue[0].diagnostics]).toEqual([
      406,
      'not-supported',
      'None of the accepted media types (text/csv) is supported; use application/fhir+json or application/fhir+xml',
    ]);
    const format = await t.api.get('/fhir/Patient?_format=turtle');
    expect([format.status, format.body.issue[0].expression]).toEqual([406, ['_format']]);
    const body = await t.api.post('/fhir/Patient').set('Content-Type', 'text/csv').send('a,b');
    expect([body.status, body.body.issue[0].expression]).toEqual([415, ['Content-Type']]);
    const token = await t.api.post('/oauth2/token').set('Content-Type', FHIR_XML).send('<x/>');
    expect(token.status).toBe(415);
  });
});
