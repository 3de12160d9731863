import { binaryRepresentation } from './binary-body';
import { FHIR_ACCEPTABLE, preferredType } from './fhir-format';

describe('content negotiation (preferredType)', () => {
  it.each([
    ['*/*', 'application/fhir+json'],
    ['application/fhir+xml', 'application/fhir+xml'],
    ['application/fhir+xml, */*', 'application/fhir+xml'],
    ['application/fhir+json;q=0.5, application/fhir+xml', 'application/fhir+xml'],
    ['application/fhir+json; fhirVersion=4.0', 'application/fhir+json'],
    ['text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8', 'application/xml'],
    ['application/json, text/plain, */*', 'application/json'],
    ['application/*', 'application/fhir+json'],
    ['text/csv', undefined],
    ['application/fhir+json;q=0', undefined],
  ])('%s -> %s', (accept, expected) => {
    expect(preferredType(accept, FHIR_ACCEPTABLE)).toBe(expected);
  });
});

describe('Binary representation (http.html#binary)', () => {
  it.each([
    ['application/pdf', undefined, 'native'],
    ['application/pdf, */*', undefined, 'native'],
    ['application/*', undefined, 'fhir'],
    ['application/pdf;q=0.5, application/fhir+json', undefined, 'fhir'],
    ['application/pdf', 'json', 'fhir'],
    [undefined, undefined, 'fhir'],
    ['image/png', undefined, 'none'],
  ] as const)('Accept %s, _format %s -> %s', (accept, format, expected) => {
    expect(binaryRepresentation(accept, format, 'application/pdf')).toBe(expected);
  });

  it('a Binary holding JSON is answered as FHIR JSON for Accept: application/json', () => {
    expect(binaryRepresentation('application/json', undefined, 'application/json')).toBe('fhir');
  });
});
