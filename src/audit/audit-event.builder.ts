import { randomUUID } from 'node:crypto';
import type { AuditEvent, AuditEventAgent, AuditEventEntity, Coding } from '@medplum/fhirtypes';
import type { AuditEventKind, AuditRecord } from '../fhir/pipeline/audit-record';

export const AUDIT_EVENT_TYPE = 'http://terminology.hl7.org/CodeSystem/audit-event-type';
export const RESTFUL_INTERACTION = 'http://hl7.org/fhir/restful-interaction';
export const DICOM = 'http://dicom.nema.org/resources/ontology/DCM';
export const HIE_AUDIT_TYPE = 'http://hie.example.org/fhir/CodeSystem/audit-event-type';
export const HIE_OPERATION = 'http://hie.example.org/fhir/CodeSystem/operation';
export const CLIENT_ID_SYSTEM = 'http://hie.example.org/fhir/client-id';
export const ACCESS_BASIS_URL = 'http://hie.example.org/fhir/StructureDefinition/access-basis';
export const BREAK_GLASS_URL = 'http://hie.example.org/fhir/StructureDefinition/break-glass-reason';
const PURPOSE_OF_USE = 'http://terminology.hl7.org/CodeSystem/v3-ActReason';
const ENTITY_TYPE = 'http://terminology.hl7.org/CodeSystem/audit-entity-type';
const OBJECT_ROLE = 'http://terminology.hl7.org/CodeSystem/object-role';
const SOURCE_TYPE = 'http://terminology.hl7.org/CodeSystem/security-source-type';
const PARTICIPATION = 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType';
const BALP = 'https://profiles.ihe.net/ITI/BALP/StructureDefinition';

/** The searchable columns stored beside the AuditEvent JSON (and covered by the hash chain). */
export interface AuditEventRow {
  id: string;
  recorded: string;
  /** `rest` for FHIR interactions; the kind for the others (token, authenticate, rate-limit, admin, …). */
  type: string;
  /** The interaction code (restful-interaction) and, for operations and admin calls, their name. */
  subtype: string[];
  action: string;
  /** AuditEvent.outcome: 0 success, 4 minor failure (4xx), 8 serious failure (5xx). */
  outcome: string;
  /** Client ids (also a refused token request's claimed id), `Organization/<id>` and the token's on_behalf_of references. */
  agent: string[];
  /** Patient ids whose data was read, written or asked for. */
  patients: string[];
  /** `Type/id` of the resources read or written. */
  entities: string[];
  purpose?: string;
  content: AuditEvent;
}

/** R4 restful-interaction code of an interaction kind. */
function interactionCode(kind: AuditEventKind): string {
  return kind === 'search-compartment' ? 'search-type' : kind;
}

const REST_KINDS = new Set<AuditEventKind>([
  'capabilities', 'create', 'read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'history-type', 'history-system',
  'search-type', 'search-system', 'search-compartment', 'batch', 'transaction', 'operation',
]);

function outcomeOf(r: AuditRecord): '0' | '4' | '8' {
  if (r.outcome === 'success') return '0';
  return r.status >= 500 ? '8' : '4';
}

/**
 * Converts a record into an AuditEvent shaped after IHE BALP (RESTful interaction patterns):
 * type rest + subtype interaction, the client and its organization as agents, this server as
 * source, each patient and resource as an entity, the search query as a query entity.
 */
export function toAuditEventRow(r: AuditRecord, node: string, id: string = randomUUID()): AuditEventRow {
  const rest = REST_KINDS.has(r.kind);
  const type: Coding = rest
    ? { system: AUDIT_EVENT_TYPE, code: 'rest', display: 'RESTful Operation' }
    : r.kind === 'token' || r.kind === 'authenticate'
      ? { system: DICOM, code: '110114', display: 'User Authentication' }
      : { system: HIE_AUDIT_TYPE, code: r.kind };
  const subtype: Coding[] = [];
  if (rest) subtype.push({ system: RESTFUL_INTERACTION, code: interactionCode(r.kind) });
  else subtype.push({ system: HIE_AUDIT_TYPE, code: r.kind });
  if (r.subtype) subtype.push({ system: HIE_OPERATION, code: r.subtype });

  const clientId = r.principal.clientId;
  const agents: AuditEventAgent[] = [
    {
      type: { coding: [{ system: DICOM, code: '110153', display: 'Source Role ID' }] },
      who: clientId ? { identifier: { system: CLIENT_ID_SYSTEM, value: clientId }, display: clientId } : { display: r.principal.kind },
      requestor: true,
      ...(r.address ? { network: { address: r.address, type: '2' } } : {}),
      ...(r.principal.role ? { role: [{ text: r.principal.role }] } : {}),
      ...(r.purposeOfUse ? { purposeOfUse: [{ coding: [{ system: PURPOSE_OF_USE, code: r.purposeOfUse }] }] } : {}),
      ...(r.breakGlassReason ? { extension: [{ url: BREAK_GLASS_URL, valueString: r.breakGlassReason }] } : {}),
    },
  ];
  if (r.principal.organization) {
    agents.push({
      type: { coding: [{ system: PARTICIPATION, code: 'PROV', display: 'healthcare provider' }] },
      who: { reference: `Organization/${r.principal.organization}` },
      requestor: false,
    });
  }
  for (const individual of r.principal.onBehalfOf ?? []) {
    // The practitioner or team the organization declared (token on_behalf_of): what a Consent naming them was matched against.
    agents.push({ who: { reference: individual }, requestor: false, name: 'on behalf of (declared by the organization)' });
  }
  if (r.claimedClientId) {
    // A refused token request: the id it claimed, unverified.
    agents.push({ who: { identifier: { system: CLIENT_ID_SYSTEM, value: r.claimedClientId } }, requestor: false, name: 'claimed client id (unverified)' });
  }

  const entities: AuditEventEntity[] = [];
  for (const p of r.patients) {
    entities.push({
      what: { reference: `Patient/${p}` },
      type: { system: ENTITY_TYPE, code: '1', display: 'Person' },
      role: { system: OBJECT_ROLE, code: '1', display: 'Patient' },
    });
  }
  for (const e of r.entities) {
    entities.push({
      what: { reference: e.versionId ? `${e.reference}/_history/${e.versionId}` : e.reference },
      type: { system: ENTITY_TYPE, code: '2', display: 'System Object' },
      role: { system: OBJECT_ROLE, code: '4', display: 'Domain Resource' },
    });
  }
  if (r.query !== undefined) {
    entities.push({
      type: { system: ENTITY_TYPE, code: '2', display: 'System Object' },
      role: { system: OBJECT_ROLE, code: '24', display: 'Query' },
      ...(r.resourceType ? { what: { display: r.resourceType } } : {}),
      query: Buffer.from(r.query, 'utf8').toString('base64'),
    });
  }

  const extension = r.accessBasis.map((b) => ({ url: ACCESS_BASIS_URL, valueString: b }));
  const content: AuditEvent = {
    resourceType: 'AuditEvent',
    id,
    meta: { profile: [`${BALP}/IHE.BasicAudit.${profileOf(r)}`] },
    ...(extension.length ? { extension } : {}),
    type,
    subtype,
    action: r.action,
    recorded: r.recorded,
    outcome: outcomeOf(r),
    outcomeDesc: r.outcome === 'success' ? `${r.status}` : `${r.status}${r.failureCode ? ` ${r.failureCode}` : ''}`,
    ...(r.purposeOfUse ? { purposeOfEvent: [{ coding: [{ system: PURPOSE_OF_USE, code: r.purposeOfUse }] }] } : {}),
    agent: agents,
    source: {
      site: node,
      observer: { display: 'hie-fhir-server' },
      type: [{ system: SOURCE_TYPE, code: '4', display: 'Application Server' }],
    },
    ...(entities.length ? { entity: entities } : {}),
  };
  if (r.requestId || r.bundleEntry !== undefined || r.path) {
    // Correlation: the request id (X-Request-Id) and, for Bundle entries, the entry index.
    content.entity = [
      ...(content.entity ?? []),
      {
        type: { system: ENTITY_TYPE, code: '4', display: 'Other' },
        ...(r.requestId ? { what: { identifier: { system: 'http://hie.example.org/fhir/request-id', value: r.requestId } } } : {}),
        ...(r.path ? { name: r.path } : {}),
        ...(r.bundleEntry !== undefined ? { description: `Bundle.entry[${r.bundleEntry}]` } : {}),
      },
    ];
  }
  const agent = [...(clientId ? [clientId] : []), ...(r.principal.organization ? [`Organization/${r.principal.organization}`] : []), ...(r.principal.onBehalfOf ?? []), ...(r.claimedClientId ? [r.claimedClientId] : [])];
  return {
    id,
    recorded: r.recorded,
    type: type.code!,
    subtype: subtype.map((c) => c.code!),
    action: r.action,
    outcome: outcomeOf(r),
    agent,
    patients: [...r.patients],
    entities: [...new Set(r.entities.map((e) => e.reference))],
    purpose: r.purposeOfUse,
    content,
  };
}

/** The BALP profile the event follows (Create, Read, Update, Delete, Query; Patient* when a patient is named). */
function profileOf(r: AuditRecord): string {
  const base = { C: 'Create', R: r.query !== undefined ? 'Query' : 'Read', U: 'Update', D: 'Delete', E: 'Execute' }[r.action];
  return r.patients.length && r.action !== 'E' ? `Patient${base}` : base;
}
