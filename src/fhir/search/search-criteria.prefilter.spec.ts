import type { Observation, Resource, Task } from '@medplum/fhirtypes';
import type { AppConfig } from '../../config/app.config';
import { FhirDefinitions } from '../definitions/fhir-definitions';
import { SearchIndexWriter } from './search-index.writer';
import { SearchService } from './search.service';

beforeAll(() => FhirDefinitions.get());

const config = { fhirBaseUrl: 'http://hie/fhir' } as AppConfig;
const writer = new SearchIndexWriter(config);
const search = new SearchService(config, writer);

const task: Task = {
  resourceType: 'Task',
  id: 't1',
  status: 'requested',
  intent: 'order',
  owner: { reference: 'Organization/clinic-b' },
  requester: { reference: 'http://elsewhere.example/fhir/Organization/x' },
  for: { reference: 'Patient/p1' },
  code: { coding: [{ system: 'urn:codes', code: 'Consult' }] },
  authoredOn: '2001-02-03',
};
const observation: Observation = {
  resourceType: 'Observation',
  id: 'o1',
  status: 'final',
  code: { coding: [{ system: 'urn:bench', code: 'bench-watched' }], text: 'Blood pressure' },
  subject: { reference: 'Patient/p1', display: 'Émile Zola' },
};

/** What the prefilter answers for criteria `query` on `resource`: 'no' (SQL skipped) or 'maybe' (SQL decides). */
function prefilter(resource: Resource, query: string): 'no' | 'maybe' {
  const criteria = search.prepareCriteria(resource.resourceType, query);
  return search.mayMatch(resource, [{ criteria }]).length ? 'maybe' : 'no';
}

describe('rest-hook criteria prefilter: decided exactly from the written version\'s index rows', () => {
  it.each([
    ['owner=Organization/clinic-b&status=requested', 'maybe'],
    ['owner=Organization/clinic-a&status=requested', 'no'],
    ['owner=Organization/clinic-b&status=accepted', 'no'],
    ['owner=clinic-b', 'maybe'],
    ['owner=http://hie/fhir/Organization/clinic-b', 'maybe'],
    ['owner=http://hie/fhir/Organization/clinic-c', 'no'],
    ['requester=http://elsewhere.example/fhir/Organization/x', 'maybe'],
    ['requester=http://elsewhere.example/fhir/Organization/y', 'no'],
    ['code=urn:codes|Consult', 'maybe'],
    ['code=urn:codes|consult', 'no'], // token codes are case-sensitive, as in SQL
    ['code=urn:other|Consult', 'no'],
    ['code=urn:codes|', 'maybe'],
    ['code=|Consult', 'no'], // a system is present
    ['code=Consult', 'maybe'],
    ['status=accepted,requested', 'maybe'], // OR-ed values
    ['status=accepted&status=requested', 'no'], // AND-ed clauses
  ])('Task?%s: %s', (query, expected) => {
    expect(prefilter(task, query)).toBe(expected);
  });

  it.each([
    // Not decidable in memory: SQL (under the subscriber's access) decides, even where it will say no.
    ['authored-on=1999-01-01', 'maybe'],
    ['_id=other', 'maybe'],
    ['status:not=requested', 'maybe'],
    ['code:text=nothing', 'maybe'],
    ['owner:Organization=clinic-a', 'maybe'],
    ['owner.name=x', 'maybe'],
    ['_lastUpdated=gt2100-01-01', 'maybe'],
  ])('Task?%s: %s (left to SQL)', (query, expected) => {
    expect(prefilter(task, query)).toBe(expected);
  });

  it('a decidable clause that fails rejects even beside undecidable ones', () => {
    expect(prefilter(task, 'authored-on=2001-02-03&status=completed')).toBe('no');
    expect(prefilter(task, 'authored-on=2001-02-03&status=requested')).toBe('maybe');
  });

  it.each([
    ['code=urn:bench|bench-watched', 'maybe'],
    ['code=urn:bench|other-42', 'no'],
    ['subject=Patient/p1', 'maybe'],
    ['subject=Patient/p2', 'no'],
  ])('Observation?%s: %s', (query, expected) => {
    expect(prefilter(observation, query)).toBe(expected);
  });

  it.each([
    ['name=zo', 'maybe'], // prefix of the normalized value (accents and case dropped)
    ['name=ZOË', 'maybe'],
    ['name=oe', 'no'],
    ['name:contains=OE', 'maybe'],
    ['name:contains=x', 'no'],
    ['name:exact=Zoë', 'maybe'],
    ['name:exact=zoë', 'no'],
    ['family=Zo', 'maybe'],
    ['given=Zo', 'no'],
  ])('Patient?%s: %s', (query, expected) => {
    expect(prefilter({ resourceType: 'Patient', id: 'p1', name: [{ family: 'Zoë', given: ['Anna'] }] }, query)).toBe(expected);
  });

  it('criteria without decidable clauses leave every candidate to SQL', () => {
    const criteria = search.prepareCriteria('Task', 'authored-on=ge2000-01-01');
    expect(criteria.prefilter.decided).toBe(0);
    expect(search.mayMatch(task, [{ criteria }, { criteria }])).toHaveLength(2);
  });

  it.each([
    ['owner=Organization/clinic-b&status=requested', true], // matched in memory: only the subscriber's access goes to SQL
    ['code=urn:codes|Consult&requester=http://elsewhere.example/fhir/Organization/x', true],
    ['owner=Organization/clinic-b&authored-on=2001-02-03', false], // one clause left to SQL: all of it goes there
    ['owner.name=x', false],
    ['_id=t1', false],
    ['', false], // no clause: nothing decided, SQL matches every row under access
  ])('Task?%s decides every clause: %s', (query, expected) => {
    expect(search.prepareCriteria('Task', query).prefilter.decidesAll).toBe(expected);
  });
});
