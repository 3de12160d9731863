import type { Resource } from '@medplum/fhirtypes';
import { buildMinimalInstance, STORABLE_RESOURCE_TYPES } from '../synthetic/minimal-instance.builder';
import { FhirError } from './fhir-error';
import { isRawDecimal, parseJsonKeepingDecimals } from './fhir-json';
import { parseFhirXml, resourceToXml } from './fhir-xml';

/** JSON with sorted keys (raw decimals as written), so equal resources compare equal as text. */
function canonical(value: unknown): string {
  const sort = (v: unknown): unknown => {
    if (v === null || typeof v !== 'object' || isRawDecimal(v)) return v;
    if (Array.isArray(v)) return v.map(sort);
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, sort((v as Record<string, unknown>)[k])]),
    );
  };
  return JSON.stringify(sort(value));
}

function roundTrip(resource: unknown, pretty = false): unknown {
  return parseFhirXml(resourceToXml(resource as object, pretty));
}

function xmlError(xml: string): FhirError {
  try {
    parseFhirXml(xml);
  } catch (err) {
    if (err instanceof FhirError) return err;
    throw err;
  }
  throw new Error('parsed without error');
}

describe('FHIR XML <-> JSON (R4 xml.html)', () => {
  it('round-trips a generated instance of each of the 144 storable types, both variants, compact and indented', () => {
    const failures: string[] = [];
    for (const type of STORABLE_RESOURCE_TYPES) {
      for (const variant of [0, 1]) {
        const json = buildMinimalInstance(type, variant);
        if (canonical(roundTrip(json, variant === 1)) !== canonical(json)) failures.push(`${type}#${variant}`);
      }
    }
    expect(STORABLE_RESOURCE_TYPES).toHaveLength(144);
    expect(failures).toEqual([]);
  });

  it('writes the FHIR namespace, definition order, attributes and primitive values', () => {
    const xml = resourceToXml({
      resourceType: 'Patient',
      name: [{ given: ['Ann'], family: 'Lee', id: 'n1' }],
      birthDate: '1970-01-02',
      active: true,
      id: 'p1',
      extension: [{ url: 'http://example.org/x', valueInteger: 3 }],
    });
    expect(xml).toBe(
      '<?xml version="1.0" encoding="UTF-8"?><Patient xmlns="http://hl7.org/fhir"><id value="p1"/>' +
        '<extension url="http://example.org/x"><valueInteger value="3"/></extension><active value="true"/>' +
        '<name id="n1"><family value="Lee"/><given value="Ann"/></name><birthDate value="1970-01-02"/></Patient>',
    );
  });

  it('keeps every digit of decimals both ways (19 digits, trailing zeros, exponent form)', () => {
    const json = parseJsonKeepingDecimals(
      '{"resourceType":"Observation","status":"final","code":{"text":"x"},"component":[' +
        '{"code":{"text":"a"},"valueQuantity":{"value":0.1234567890123456789}},' +
        '{"code":{"text":"b"},"valueQuantity":{"value":1.50}},' +
        '{"code":{"text":"c"},"valueQuantity":{"value":-7}},' +
        '{"code":{"text":"d"},"valueQuantity":{"value":12345678901234567890}}]}',
    );
    const xml = resourceToXml(json as object);
    expect(xml).toContain('<value value="0.1234567890123456789"/>');
    expect(xml).toContain('<value value="1.50"/>');
    expect(xml).toContain('<value value="12345678901234567890"/>');
    expect(canonical(parseFhirXml(xml))).toBe(canonical(json));
    const parsed = parseFhirXml(
      '<Observation xmlns="http://hl7.org/fhir"><status value="final"/><code><text value="x"/></code>' +
        '<valueQuantity><value value="1.50e1"/></valueQuantity></Observation>',
    );
    expect(JSON.stringify(parsed)).toBe('{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":15.0}}');
  });

  it('maps primitive extensions (`_name`) to id/extension on the element, including arrays with nulls', () => {
    const json = {
      resourceType: 'Patient',
      birthDate: '1970-01-02',
      _birthDate: {
        id: 'bd',
        extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/patient-birthTime', valueDateTime: '1970-01-02T10:15:00+01:00' }],
      },
      name: [
        {
          given: ['Ann', null, 'Cy'],
          _given: [null, { extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/iso21090-EN-qualifier', valueCode: 'IN' }] }, { id: 'g3' }],
          _family: { extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/data-absent-reason', valueCode: 'unknown' }] },
        },
      ],
    };
    const xml = resourceToXml(json);
    expect(xml).toContain(
      '<birthDate id="bd" value="1970-01-02"><extension url="http://hl7.org/fhir/StructureDefinition/patient-birthTime">' +
        '<valueDateTime value="1970-01-02T10:15:00+01:00"/></extension></birthDate>',
    );
    expect(xml).toContain(
      '<given value="Ann"/><given><extension url="http://hl7.org/fhir/StructureDefinition/iso21090-EN-qualifier"><valueCode value="IN"/></extension></given><given id="g3" value="Cy"/>',
    );
    expect(canonical(parseFhirXml(xml))).toBe(canonical(json));
  });

  it('embeds the narrative as XHTML and gives back the same div text', () => {
    const div = '<div xmlns="http://www.w3.org/1999/xhtml"><p>A &amp; B &lt; C</p><div><b>nested</b><br/></div>\n  <table><tr><td>x</td></tr></table></div>';
    const json = { resourceType: 'Patient', text: { status: 'generated', div } };
    const xml = resourceToXml(json);
    expect(xml).toContain(`<text><status value="generated"/>${div}</text>`);
    expect(parseFhirXml(xml)).toEqual(json);
  });

  it('wraps contained and Bundle entry resources in an element named for their type; contentReference and choice types', () => {
    const bundle = {
      resourceType: 'Bundle',
      type: 'collection',
      entry: [
        {
          fullUrl: 'urn:uuid:8c3b3c1a-3f0e-4f5e-8d43-2b3c7ad0c001',
          resource: {
            resourceType: 'Questionnaire',
            status: 'active',
            contained: [{ resourceType: 'ValueSet', id: 'vs', status: 'active' }],
            item: [{ linkId: '1', type: 'group', item: [{ linkId: '1.1', type: 'decimal', initial: [{ valueDecimal: 2.0 }] }] }],
          },
        },
        { resource: { resourceType: 'Basic', code: { text: 'x' }, extension: [{ url: 'http://example.org/q', valueQuantity: { value: 1, unit: 'mg' } }] } },
        { response: { status: '404', outcome: { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'not-found' }] } } },
      ],
    };
    const xml = resourceToXml(bundle);
    expect(xml).toContain('<resource><Questionnaire><contained><ValueSet><id value="vs"/><status value="active"/></ValueSet></contained>');
    expect(xml).toContain('<item><linkId value="1.1"/><type value="decimal"/><initial><valueDecimal value="2"/></initial></item>');
    expect(xml).toContain('<valueQuantity><value value="1"/><unit value="mg"/></valueQuantity>');
    // An element whose type is a resource type (Bundle.entry.response.outcome) wraps it too.
    expect(xml).toContain('<response><status value="404"/><outcome><OperationOutcome><issue>');
    expect(canonical(parseFhirXml(xml))).toBe(canonical(bundle));
  });

  it('escapes attribute values, line breaks included, and reads them back', () => {
    const json = { resourceType: 'Basic', code: { text: ' a "quoted" <b> & \'x\'\nline 2\ttab\r\n\u00a0' } };
    expect(parseFhirXml(resourceToXml(json))).toEqual(json);
  });

  it('reads XML as hospital engines write it: declaration, comments, whitespace, elements out of order', () => {
    const parsed = parseFhirXml(`<?xml version="1.0" encoding="UTF-8"?>
      <!-- from an interface engine -->
      <Patient xmlns="http://hl7.org/fhir">
        <gender value="female"/>
        <id value="x1"/>
        <name>
          <family value="Doe"/>
        </name>
      </Patient>`);
    expect(parsed).toEqual({ resourceType: 'Patient', id: 'x1', name: [{ family: 'Doe' }], gender: 'female' });
    expect(Object.keys(parsed)).toEqual(['resourceType', 'id', 'name', 'gender']);
  });

  it('refuses bad XML with 400 structure naming where', () => {
    const unknown = xmlError('<Patient xmlns="http://hl7.org/fhir"><name><nickname value="x"/></name></Patient>');
    expect([unknown.status, unknown.issues[0].code, unknown.issues[0].expression]).toEqual([400, 'structure', ['Patient.name.nickname']]);
    const dtd = xmlError('<!DOCTYPE x [<!ENTITY a "aaaa">]><Patient xmlns="http://hl7.org/fhir"><id value="&a;"/></Patient>');
    expect([dtd.status, dtd.issues[0].code, dtd.issues[0].diagnostics]).toEqual([400, 'structure', 'The XML body has a DOCTYPE; FHIR XML must not use DTDs']);
    const broken = xmlError('<Patient xmlns="http://hl7.org/fhir"><name></Patient>');
    expect([broken.status, broken.issues[0].code]).toEqual([400, 'structure']);
    expect(broken.issues[0].diagnostics).toMatch(/^The request body is not well-formed XML \(line 1, column \d+\)$/);
    const ns = xmlError('<Patient><id value="x"/></Patient>');
    expect(ns.issues[0].diagnostics).toBe('The root element must be in the FHIR namespace http://hl7.org/fhir');
    const bool = xmlError('<Patient xmlns="http://hl7.org/fhir"><active value="yes"/></Patient>');
    expect([bool.issues[0].diagnostics, bool.issues[0].expression]).toEqual(["'yes' is not a boolean", ['Patient.active']]);
    const twice = xmlError('<Patient xmlns="http://hl7.org/fhir"><gender value="male"/><gender value="female"/></Patient>');
    expect(twice.issues[0].expression).toEqual(['Patient.gender']);
    for (const name of ['__proto__', 'constructor']) {
      const proto = xmlError(`<Patient xmlns="http://hl7.org/fhir"><${name} value="x"/></Patient>`);
      expect([proto.status, proto.issues[0].code]).toEqual([400, 'structure']);
    }
    const deep = xmlError(`<Patient xmlns="http://hl7.org/fhir">${'<contact>'.repeat(50000)}${'</contact>'.repeat(50000)}</Patient>`);
    expect([deep.status, deep.issues[0].code]).toEqual([400, 'too-costly']);
    const type = xmlError('<Nonsense xmlns="http://hl7.org/fhir"/>');
    expect(type.issues[0].diagnostics).toBe('<Nonsense> is not an R4 resource type');
  });

  it('refuses to write what R4 does not define rather than dropping it', () => {
    expect(() => resourceToXml({ resourceType: 'Patient', nickname: 'x' } as Resource)).toThrow('Cannot write XML: Patient.nickname is not an R4 element');
  });
});
