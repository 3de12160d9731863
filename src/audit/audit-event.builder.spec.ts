import type { AuditEventEntity } from '@medplum/fhirtypes';
import { toAuditEventRow } from './audit-event.builder';
import type { AuditRecord } from '../fhir/pipeline/audit-record';

// Literal URLs, not the exported constants: a changed system must fail here.
const DCM = 'http://dicom.nema.org/resources/ontology/DCM';
const HIE_TYPE = 'http://hie.example.org/fhir/CodeSystem/audit-event-type';
const ENTITY_TYPE = 'http://terminology.hl7.org/CodeSystem/audit-entity-type';
const OBJECT_ROLE = 'http://terminology.hl7.org/CodeSystem/object-role';
const CLIENT_ID = 'http://hie.example.org/fhir/client-id';
const BALP = 'https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.';
const RECORDED = '2026-12-01T10:00:00.000Z';
const SOURCE = {
  site: 'node-7',
  observer: { display: 'hie-fhir-server' },
  type: [{ system: 'http://terminology.hl7.org/CodeSystem/security-source-type', code: '4', display: 'Application Server' }],
};
const SOURCE_ROLE = { coding: [{ system: DCM, code: '110153', display: 'Source Role ID' }] };

/** A record with nothing optional: a hospital client's read of nothing. */
const record = (over: Partial<AuditRecord> = {}): AuditRecord => ({
  kind: 'read',
  action: 'R',
  recorded: RECORDED,
  principal: { kind: 'client', clientId: 'hosp-1', scopes: [] },
  outcome: 'success',
  status: 200,
  entities: [],
  patients: [],
  accessBasis: [],
  durationMs: 3,
  ...over,
});
const build = (over: Partial<AuditRecord> = {}) => toAuditEventRow(record(over), 'node-7', 'ae-1');

describe('toAuditEventRow: an audit record as a BALP-shaped AuditEvent and its searchable columns', () => {
  it('a break-the-glass compartment search with every optional part', () => {
    const row = build({
      kind: 'search-compartment',
      principal: { kind: 'client', clientId: 'hosp-1', organization: 'org-a', role: 'hospital', scopes: [], onBehalfOf: ['Practitioner/dr-x', 'CareTeam/t1'] },
      address: '10.0.0.5',
      purposeOfUse: 'ETREAT',
      breakGlassReason: 'unconscious in ED',
      resourceType: 'Observation',
      query: 'code=8480-6',
      path: 'Patient/p1/Observation',
      requestId: 'req-9',
      bundleEntry: 0,
      patients: ['p1', 'p2'],
      entities: [
        { reference: 'Observation/o1', versionId: '2', patients: ['p1'] },
        { reference: 'Observation/o1', versionId: '3', patients: ['p1'] },
        { reference: 'Patient/p2', patients: ['p2'] },
      ],
      accessBasis: ['scope: system/Observation.rs', 'consent: break-the-glass'],
    });
    const purpose = [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActReason', code: 'ETREAT' }] }];
    expect(row).toEqual({
      id: 'ae-1',
      recorded: RECORDED,
      type: 'rest',
      subtype: ['search-type'],
      action: 'R',
      outcome: '0',
      agent: ['hosp-1', 'Organization/org-a', 'Practitioner/dr-x', 'CareTeam/t1'],
      patients: ['p1', 'p2'],
      entities: ['Observation/o1', 'Patient/p2'],
      purpose: 'ETREAT',
      content: {
        resourceType: 'AuditEvent',
        id: 'ae-1',
        meta: { profile: [`${BALP}PatientQuery`] },
        extension: [
          { url: 'http://hie.example.org/fhir/StructureDefinition/access-basis', valueString: 'scope: system/Observation.rs' },
          { url: 'http://hie.example.org/fhir/StructureDefinition/access-basis', valueString: 'consent: break-the-glass' },
        ],
        type: { system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest', display: 'RESTful Operation' },
        subtype: [{ system: 'http://hl7.org/fhir/restful-interaction', code: 'search-type' }],
        action: 'R',
        recorded: RECORDED,
        outcome: '0',
        outcomeDesc: '200',
        purposeOfEvent: purpose,
        agent: [
          {
            type: SOURCE_ROLE,
            who: { identifier: { system: CLIENT_ID, value: 'hosp-1' }, display: 'hosp-1' },
            requestor: true,
            network: { address: '10.0.0.5', type: '2' },
            role: [{ text: 'hospital' }],
            purposeOfUse: purpose,
            extension: [{ url: 'http://hie.example.org/fhir/StructureDefinition/break-glass-reason', valueString: 'unconscious in ED' }],
          },
          {
            type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'PROV', display: 'healthcare provider' }] },
            who: { reference: 'Organization/org-a' },
            requestor: false,
          },
          { who: { reference: 'Practitioner/dr-x' }, requestor: false, name: 'on behalf of (declared by the organization)' },
          { who: { reference: 'CareTeam/t1' }, requestor: false, name: 'on behalf of (declared by the organization)' },
        ],
        source: SOURCE,
        entity: [
          { what: { reference: 'Patient/p1' }, type: { system: ENTITY_TYPE, code: '1', display: 'Person' }, role: { system: OBJECT_ROLE, code: '1', display: 'Patient' } },
          { what: { reference: 'Patient/p2' }, type: { system: ENTITY_TYPE, code: '1', display: 'Person' }, role: { system: OBJECT_ROLE, code: '1', display: 'Patient' } },
          { what: { reference: 'Observation/o1/_history/2' }, type: { system: ENTITY_TYPE, code: '2', display: 'System Object' }, role: { system: OBJECT_ROLE, code: '4', display: 'Domain Resource' } },
          { what: { reference: 'Observation/o1/_history/3' }, type: { system: ENTITY_TYPE, code: '2', display: 'System Object' }, role: { system: OBJECT_ROLE, code: '4', display: 'Domain Resource' } },
          { what: { reference: 'Patient/p2' }, type: { system: ENTITY_TYPE, code: '2', display: 'System Object' }, role: { system: OBJECT_ROLE, code: '4', display: 'Domain Resource' } },
          // The query, base64 of its UTF-8 text.
          { type: { system: ENTITY_TYPE, code: '2', display: 'System Object' }, role: { system: OBJECT_ROLE, code: '24', display: 'Query' }, what: { display: 'Observation' }, query: 'Y29kZT04NDgwLTY=' },
          {
            type: { system: ENTITY_TYPE, code: '4', display: 'Other' },
            what: { identifier: { system: 'http://hie.example.org/fhir/request-id', value: 'req-9' } },
            name: 'Patient/p1/Observation',
            description: 'Bundle.entry[0]',
          },
        ],
      },
    });
  });

  it('a refused token request without a client: DICOM user authentication, the claimed id unverified, nothing optional', () => {
    const row = build({ kind: 'token', action: 'E', principal: { kind: 'anonymous', scopes: [] }, claimedClientId: 'who-knows', outcome: 'failure', status: 401, failureCode: 'login' });
    expect(row).toEqual({
      id: 'ae-1',
      recorded: RECORDED,
      type: '110114',
      subtype: ['token'],
      action: 'E',
      outcome: '4',
      agent: ['who-knows'],
      patients: [],
      entities: [],
      purpose: undefined,
      content: {
        resourceType: 'AuditEvent',
        id: 'ae-1',
        meta: { profile: [`${BALP}Execute`] },
        type: { system: DCM, code: '110114', display: 'User Authentication' },
        subtype: [{ system: HIE_TYPE, code: 'token' }],
        action: 'E',
        recorded: RECORDED,
        outcome: '4',
        outcomeDesc: '401 login',
        agent: [
          { type: SOURCE_ROLE, who: { display: 'anonymous' }, requestor: true },
          { who: { identifier: { system: CLIENT_ID, value: 'who-knows' } }, requestor: false, name: 'claimed client id (unverified)' },
        ],
        source: SOURCE,
      },
    });
    // Absent, not present-and-undefined: the stored JSON must not carry empty keys.
    expect(Object.keys(row.content)).toEqual(['resourceType', 'id', 'meta', 'type', 'subtype', 'action', 'recorded', 'outcome', 'outcomeDesc', 'agent', 'source']);
    expect(Object.keys(row.content.agent[0])).toEqual(['type', 'who', 'requestor']);
  });

  it.each([
    ['authenticate', undefined, { system: DCM, code: '110114', display: 'User Authentication' }, [{ system: HIE_TYPE, code: 'authenticate' }]],
    ['rate-limit', undefined, { system: HIE_TYPE, code: 'rate-limit' }, [{ system: HIE_TYPE, code: 'rate-limit' }]],
    ['admin', 'client-register', { system: HIE_TYPE, code: 'admin' }, [{ system: HIE_TYPE, code: 'admin' }, { system: 'http://hie.example.org/fhir/CodeSystem/operation', code: 'client-register' }]],
    ['operation', '$everything', { system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest', display: 'RESTful Operation' }, [{ system: 'http://hl7.org/fhir/restful-interaction', code: 'operation' }, { system: 'http://hie.example.org/fhir/CodeSystem/operation', code: '$everything' }]],
    ['capabilities', undefined, { system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest', display: 'RESTful Operation' }, [{ system: 'http://hl7.org/fhir/restful-interaction', code: 'capabilities' }]],
  ] as const)('types a %s record (subtype %s)', (kind, subtype, type, subtypes) => {
    const row = build({ kind, subtype, action: 'E' });
    expect(row.content.type).toEqual(type);
    expect(row.content.subtype).toEqual(subtypes);
    expect([row.type, row.subtype]).toEqual([type.code, subtypes.map((c) => c.code)]);
  });

  it.each([
    'create', 'read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'history-type', 'history-system', 'search-type', 'search-system', 'batch', 'transaction',
  ] as const)('a %s is a RESTful interaction of its own code', (kind) => {
    const row = build({ kind });
    expect([row.type, row.subtype]).toEqual(['rest', [kind]]);
  });

  it('grades the outcome: success 0, a 4xx failure 4, a 5xx failure 8; the status (and issue code) as its description', () => {
    const outcomes = [
      build({ status: 201 }),
      build({ outcome: 'failure', status: 499, failureCode: 'forbidden' }),
      build({ outcome: 'failure', status: 500, failureCode: 'exception' }),
      build({ outcome: 'failure', status: 404 }),
      // A success never prints a failure code.
      build({ status: 200, failureCode: 'informational' }),
    ].map((r) => [r.outcome, r.content.outcome, r.content.outcomeDesc]);
    expect(outcomes).toEqual([
      ['0', '0', '201'],
      ['4', '4', '499 forbidden'],
      ['8', '8', '500 exception'],
      ['4', '4', '404'],
      ['0', '0', '200'],
    ]);
  });

  it('names the BALP profile from the action, Patient* when a patient is named (not for Execute), Query when there is a query', () => {
    const profile = (over: Partial<AuditRecord>) => build(over).content.meta!.profile![0].slice(BALP.length);
    expect([
      profile({ action: 'C', patients: ['p1'] }),
      profile({ action: 'C' }),
      profile({ action: 'R', patients: ['p1'] }),
      profile({ action: 'R', query: '' }),
      profile({ action: 'U' }),
      profile({ action: 'U', patients: ['p1'] }),
      profile({ action: 'D' }),
      profile({ action: 'D', patients: ['p1'] }),
      profile({ action: 'E', patients: ['p1'] }),
    ]).toEqual(['PatientCreate', 'Create', 'PatientRead', 'Query', 'Update', 'PatientUpdate', 'Delete', 'PatientDelete', 'Execute']);
  });

  it('an empty query is still a query entity; without a resource type it names none', () => {
    expect(build({ query: '' }).content.entity).toEqual([{ type: { system: ENTITY_TYPE, code: '2', display: 'System Object' }, role: { system: OBJECT_ROLE, code: '24', display: 'Query' }, query: '' }]);
  });

  it.each<[string, Partial<AuditRecord>, AuditEventEntity]>([
    ['a request id', { requestId: 'req-1' }, { type: { system: ENTITY_TYPE, code: '4', display: 'Other' }, what: { identifier: { system: 'http://hie.example.org/fhir/request-id', value: 'req-1' } } }],
    ['a path', { path: 'metadata' }, { type: { system: ENTITY_TYPE, code: '4', display: 'Other' }, name: 'metadata' }],
    ['a Bundle entry index', { bundleEntry: 3 }, { type: { system: ENTITY_TYPE, code: '4', display: 'Other' }, description: 'Bundle.entry[3]' }],
  ])('a correlation entity for %s alone', (_name, over, entity) => {
    expect(build(over).content.entity).toEqual([entity]);
  });

  it('a client without an organization is the only agent; an id is generated when none is given', () => {
    const row = toAuditEventRow(record(), 'node-7');
    expect(row.agent).toEqual(['hosp-1']);
    expect(row.content.agent).toEqual([{ type: SOURCE_ROLE, who: { identifier: { system: CLIENT_ID, value: 'hosp-1' }, display: 'hosp-1' }, requestor: true }]);
    expect(row.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(row.content.id).toBe(row.id);
    expect(toAuditEventRow(record(), 'node-7').id).not.toBe(row.id);
  });

  it('copies the patients, not the record array', () => {
    const patients = ['p1'];
    const row = build({ patients });
    expect(row.patients).toEqual(['p1']);
    expect(row.patients).not.toBe(patients);
  });
});
