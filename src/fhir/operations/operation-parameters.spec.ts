import type { OperationDefinition } from '@medplum/fhirtypes';
import { FhirError } from '../../common/fhir-error';
import { buildInteraction, OperationInteraction, QueryParams } from '../pipeline/interaction';
import { parseOperationInput } from './operation-parameters';

const DEFINITION: OperationDefinition = {
  resourceType: 'OperationDefinition',
  status: 'active',
  kind: 'operation',
  name: 'Test',
  code: 'test',
  system: true,
  type: false,
  instance: false,
  parameter: [
    { name: 'since', use: 'in', min: 0, max: '1', type: 'instant' },
    { name: 'day', use: 'in', min: 0, max: '1', type: 'date' },
    { name: 'count', use: 'in', min: 0, max: '1', type: 'positiveInt' },
    { name: 'flag', use: 'in', min: 0, max: '1', type: 'boolean' },
    { name: 'type', use: 'in', min: 0, max: '*', type: 'code' },
    { name: 'subject', use: 'in', min: 0, max: '1', type: 'Reference' },
    { name: 'meta', use: 'in', min: 0, max: '1', type: 'Meta' },
    { name: 'patient', use: 'in', min: 0, max: '1', type: 'Patient' },
    { name: 'needed', use: 'in', min: 1, max: '1', type: 'string' },
    { name: 'result', use: 'out', min: 1, max: '1', type: 'string' },
  ],
};

function invoke(query: QueryParams, body?: unknown): OperationInteraction {
  return buildInteraction('operation', { operation: 'test', query, body, path: '$test', method: body === undefined ? 'GET' : 'POST' }) as OperationInteraction;
}

/** The 400 a bad input gets: [issue code, expression, diagnostics]. */
function refusal(query: QueryParams, body?: unknown): [string, string[] | undefined, string] {
  try {
    parseOperationInput(DEFINITION, invoke(query, body));
  } catch (err) {
    const e = err as FhirError;
    expect(e.status).toBe(400);
    return [e.issues[0].code, e.issues[0].expression, e.issues[0].diagnostics as string];
  }
  throw new Error('no refusal');
}

const params = (...parameter: unknown[]): unknown => ({ resourceType: 'Parameters', parameter: [{ name: 'needed', valueString: 'x' }, ...parameter] });

describe('parseOperationInput: one parser driven by the OperationDefinition', () => {
  it('reads typed query-string values; response shaping is not a parameter', () => {
    const input = parseOperationInput(DEFINITION, invoke({ needed: 'x', since: '2024-01-01T00:00:00Z', count: '20', flag: 'true', type: ['a', 'b'], subject: 'Patient/1', _format: 'json', _pretty: 'true' }));
    expect([input.text('since'), input.integer('count'), input.texts('type'), input.text('needed')]).toEqual(['2024-01-01T00:00:00Z', 20, ['a', 'b'], 'x']);
    expect(input.all('count')).toEqual([{ name: 'count', valuePositiveInt: 20 }]);
    expect(input.all('flag')).toEqual([{ name: 'flag', valueBoolean: true }]);
    expect(input.all('subject')).toEqual([{ name: 'subject', valueReference: { reference: 'Patient/1' } }]);
    expect(input.has('day')).toBe(false);
  });

  it('reads a Parameters body: the declared value[x] (or one of its family), complex types and resources', () => {
    const input = parseOperationInput(DEFINITION, invoke({}, params({ name: 'count', valueInteger: 5 })));
    expect(input.integer('count')).toBe(5);
    const full = parseOperationInput(
      DEFINITION,
      invoke({}, params({ name: 'type', valueString: 'a' }, { name: 'type', valueCode: 'b' }, { name: 'meta', valueMeta: { tag: [{ code: 't' }] } }, { name: 'patient', resource: { resourceType: 'Patient' } })),
    );
    expect([full.texts('type'), full.all('meta')[0].valueMeta, full.resource('patient')]).toEqual([['a', 'b'], { tag: [{ code: 't' }] }, { resourceType: 'Patient' }]);
  });

  it.each([
    ['unknown name', { needed: 'x', colour: 'red' }, undefined, ['invalid', ['colour'], "Unknown parameter 'colour' for $test"]],
    ['an out parameter given as input', { needed: 'x', result: 'r' }, undefined, ['invalid', ['result'], "Unknown parameter 'result' for $test"]],
    ['missing required', {}, undefined, ['required', ['needed'], "Parameter 'needed' is required by $test"]],
    ['over max', { needed: ['x', 'y'] }, undefined, ['invalid', ['needed'], "Parameter 'needed' may be given at most 1 time to $test"]],
    ['not an instant', { needed: 'x', since: '2024-01-01' }, undefined, ['invalid', ['since'], "Parameter 'since' of $test must be a FHIR instant, not '2024-01-01'"]],
    ['no such day', { needed: 'x', day: '2023-02-29' }, undefined, ['invalid', ['day'], "Parameter 'day' of $test must be a FHIR date, not '2023-02-29'"]],
    ['zero is not a positiveInt', { needed: 'x', count: '0' }, undefined, ['invalid', ['count'], "Parameter 'count' of $test must be a FHIR positiveInt, not '0'"]],
    ['beyond 32 bits', { needed: 'x', count: '2147483648' }, undefined, ['invalid', ['count'], "Parameter 'count' of $test must be a FHIR positiveInt, not '2147483648'"]],
    ['not a boolean', { needed: 'x', flag: 'yes' }, undefined, ['invalid', ['flag'], "Parameter 'flag' of $test must be a FHIR boolean, not 'yes'"]],
    ['a complex type in the URL', { needed: 'x', meta: 'm' }, undefined, ['invalid', ['meta'], "Parameter 'meta' of $test is a Meta: POST it in a Parameters body"]],
  ] as const)('query: %s is a 400 naming it', (_label, query, body, expected) => {
    expect(refusal(query as QueryParams, body)).toEqual(expected);
  });

  it.each([
    ['another type family', params({ name: 'count', valueString: '5' }), ['invalid', ['count'], "Parameter 'count' of $test needs a valuePositiveInt"]],
    ['a JSON string for an integer', params({ name: 'count', valuePositiveInt: '5' }), ['invalid', ['count'], "Parameter 'count' of $test must be a FHIR positiveInt, not '5'"]],
    ['two values', params({ name: 'flag', valueBoolean: true, valueString: 'x' }), ['invalid', ['flag'], "Parameter 'flag' of $test has more than one value"]],
    ['a resource of another type', params({ name: 'patient', resource: { resourceType: 'Observation' } }), ['invalid', ['patient'], "Parameter 'patient' of $test needs a Patient resource"]],
    ['a value for a resource', params({ name: 'patient', valueString: 'Patient/1' }), ['invalid', ['patient'], "Parameter 'patient' of $test needs a resource"]],
    ['a primitive for a complex type', params({ name: 'meta', valueString: 'm' }), ['invalid', ['meta'], "Parameter 'meta' of $test needs a valueMeta"]],
    ['no name', { resourceType: 'Parameters', parameter: [{ valueString: 'x' }] }, ['invalid', ['Parameters.parameter[0]'], 'Every Parameters.parameter needs a name']],
    ['not a Parameters body', { resourceType: 'Patient' }, ['invalid', ['resourceType'], 'The body of $test must be a Parameters resource']],
  ] as const)('body: %s is a 400 naming it', (_label, body, expected) => {
    expect(refusal({}, body)).toEqual(expected);
  });

  it('counts query and body occurrences together', () => {
    expect(refusal({ count: '1' }, params({ name: 'count', valuePositiveInt: 2 }))).toEqual(['invalid', ['count'], "Parameter 'count' may be given at most 1 time to $test"]);
  });

  it('with body: false reads only the query string (the body is the operation\'s own, e.g. $validate\'s resource)', () => {
    const input = parseOperationInput(DEFINITION, invoke({ needed: 'x' }, { resourceType: 'Patient' }), { body: false });
    expect(input.text('needed')).toBe('x');
  });
});
