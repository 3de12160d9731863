import type { AppConfig } from '../config/app.config';
import { FhirError } from '../common/fhir-error';
import type { AccessFragment } from '../fhir/pipeline/access-predicate';
import type { Interaction, InteractionKind } from '../fhir/pipeline/interaction';
import type { HieRole, Principal } from '../fhir/pipeline/principal';
import type { OperationDeclaration } from '../fhir/operations/fhir-operation';
import { SqlParams } from '../fhir/storage/sql-params';
import { SmartAuthorization } from './smart.authorization';

const auth = new SmartAuthorization({ fhirBaseUrl: 'http://hie/fhir' } as AppConfig);

const client = (role: HieRole, scopes: string[], extra: Partial<Principal> = {}): Principal => ({
  kind: 'client',
  clientId: `c-${role}`,
  organization: 'org-a',
  role,
  scopes,
  purposeOfUse: 'TREAT',
  ...extra,
});
const interaction = (kind: InteractionKind, resourceType?: string, extra: Record<string, unknown> = {}): Interaction =>
  ({ kind, resourceType, query: {}, path: '', ...extra }) as unknown as Interaction;

/** 'allowed' (with no access fragment), or the refusal as [status, code, diagnostics]. */
function decide(principal: Principal, i: Interaction): 'allowed' | [number, string, string | undefined] {
  try {
    const fragments = auth.authorize(principal, i);
    expect(fragments).toEqual([]);
    return 'allowed';
  } catch (e) {
    if (!(e instanceof FhirError)) throw e;
    return [e.status, e.issues[0].code, e.issues[0].diagnostics];
  }
}

const ALL = ['system/*.cruds'];

describe('SMART authorization: role AND scope, default deny', () => {
  it.each([
    // [name, principal, interaction, decision]
    ['hospital reads a Patient', client('hospital', ALL), interaction('read', 'Patient'), 'allowed'],
    ['hospital creates an Observation', client('hospital', ALL), interaction('create', 'Observation'), 'allowed'],
    ['hospital searches across all types', client('hospital', ALL), interaction('search-system'), 'allowed'],
    ['hospital reads history of everything', client('hospital', ALL), interaction('history-system'), 'allowed'],
    ['hospital submits an AuditEvent', client('hospital', ALL), interaction('create', 'AuditEvent'), 'allowed'],
    ['hospital reads an AuditEvent by id', client('hospital', ALL), interaction('read', 'AuditEvent'), 'allowed'],
    ['hospital may not search AuditEvents', client('hospital', ALL), interaction('search-type', 'AuditEvent'), [403, 'forbidden', 'The hospital role may not search AuditEvent']],
    ['hospital may not update an AuditEvent', client('hospital', ALL), interaction('update', 'AuditEvent'), [403, 'forbidden', 'The hospital role may not update AuditEvent']],
    ['hospital may not delete an AuditEvent', client('hospital', ALL), interaction('delete', 'AuditEvent'), [403, 'forbidden', 'The hospital role may not delete AuditEvent']],
    ['hospital reads a SearchParameter', client('hospital', ALL), interaction('read', 'SearchParameter'), 'allowed'],
    ['hospital searches SearchParameters', client('hospital', ALL), interaction('search-type', 'SearchParameter'), 'allowed'],
    ['hospital may not write a SearchParameter', client('hospital', ALL), interaction('update', 'SearchParameter'), [403, 'forbidden', 'The hospital role may not update SearchParameter']],
    ['hospital may not delete a SearchParameter', client('hospital', ALL), interaction('delete', 'SearchParameter'), [403, 'forbidden', 'The hospital role may not delete SearchParameter']],
    ['scope of another type', client('hospital', ['system/Patient.cruds']), interaction('read', 'Observation'), [403, 'forbidden', 'No granted scope allows read Observation (system/Observation.r)']],
    ['scope without the verb', client('hospital', ['system/Patient.rs']), interaction('patch', 'Patient'), [403, 'forbidden', 'No granted scope allows update Patient (system/Patient.u)']],
    ['v1 read scope allows search', client('hospital', ['system/Patient.read']), interaction('search-type', 'Patient'), 'allowed'],
    ['v1 read scope allows history', client('hospital', ['system/Patient.read']), interaction('history-instance', 'Patient'), 'allowed'],
    ['v1 write scope allows delete', client('hospital', ['system/Patient.write']), interaction('delete', 'Patient'), 'allowed'],
    ['typed scope cannot search all types', client('hospital', ['system/Patient.rs']), interaction('search-system'), [403, 'forbidden', 'No granted scope allows search across all types (system/*.s)']],
    ['no scopes at all', client('hospital', []), interaction('read', 'Patient'), [403, 'forbidden', 'No granted scope allows read Patient (system/Patient.r)']],
    ['unparseable scopes grant nothing', client('hospital', ['patient/*.*', 'openid']), interaction('read', 'Patient'), [403, 'forbidden', 'No granted scope allows read Patient (system/Patient.r)']],
    ['auditor searches AuditEvents', client('auditor', ['system/*.rs']), interaction('search-type', 'AuditEvent'), 'allowed'],
    ['auditor reads an AuditEvent', client('auditor', ['system/*.rs']), interaction('read', 'AuditEvent'), 'allowed'],
    ['auditor may not read a Patient', client('auditor', ['system/*.rs']), interaction('read', 'Patient'), [403, 'forbidden', 'The auditor role may not read Patient']],
    ['auditor may not write an AuditEvent', client('auditor', ALL), interaction('create', 'AuditEvent'), [403, 'forbidden', 'The auditor role may not create AuditEvent']],
    ['auditor may not search all types', client('auditor', ALL), interaction('search-system'), [403, 'forbidden', 'The auditor role may not search across all types']],
    ['admin writes an Organization', client('admin', ALL), interaction('update', 'Organization'), 'allowed'],
    ['admin writes a SearchParameter', client('admin', ALL), interaction('create', 'SearchParameter'), 'allowed'],
    ['admin may not read a Patient', client('admin', ALL), interaction('read', 'Patient'), [403, 'forbidden', 'The admin role may not read Patient']],
    ['public health without clinical access reads nothing', client('public-health', ALL), interaction('read', 'Patient'), [403, 'forbidden', 'The public-health role may not read Patient']],
    ['public health without clinical access reads the statistics Measures', client('public-health', ALL), interaction('read', 'Measure'), 'allowed'],
    ['public health with clinical access reads a Patient', client('public-health', ALL, { clinicalAccess: true }), interaction('read', 'Patient'), 'allowed'],
    ['public health with clinical access searches all types', client('public-health', ALL, { clinicalAccess: true }), interaction('search-system'), 'allowed'],
    ['public health never writes', client('public-health', ALL, { clinicalAccess: true }), interaction('create', 'Observation'), [403, 'forbidden', 'The public-health role may not create Observation']],
    ['public health never sees AuditEvents', client('public-health', ALL, { clinicalAccess: true }), interaction('search-type', 'AuditEvent'), [403, 'forbidden', 'The public-health role may not search AuditEvent']],
    ['clinical access is a public-health flag: an admin with it still reads no Patient', client('admin', ALL, { clinicalAccess: true }), interaction('read', 'Patient'), [403, 'forbidden', 'The admin role may not read Patient']],
    ['clinical access is a public-health flag: an auditor with it still searches no Observation', client('auditor', ALL, { clinicalAccess: true }), interaction('search-type', 'Observation'), [403, 'forbidden', 'The auditor role may not search Observation']],
    // Default deny also holds for a kind the pipeline does not know (verb `x`, named "use").
    ['an unknown interaction kind is no scope\'s verb', client('hospital', ALL), interaction('frobnicate' as InteractionKind, 'Patient'), [403, 'forbidden', 'No granted scope allows use Patient (system/Patient.x)']],
    ['an unknown interaction kind is no role\'s verb', client('auditor', ALL), interaction('frobnicate' as InteractionKind, 'AuditEvent'), [403, 'forbidden', 'The auditor role may not use AuditEvent']],
    ['a token without a role', client('hospital', ALL, { role: undefined }), interaction('read', 'Patient'), [401, 'login', 'A valid bearer token is required']],
    ['a system principal, even with a role, is not a token client', client('hospital', ALL, { kind: 'system' }), interaction('read', 'Patient'), [401, 'login', 'A valid bearer token is required']],
    ['anonymous', { kind: 'anonymous', scopes: [] } as Principal, interaction('read', 'Patient'), [401, 'login', 'A valid bearer token is required']],
    ['anonymous reads the CapabilityStatement', { kind: 'anonymous', scopes: [] } as Principal, interaction('capabilities'), 'allowed'],
    ['break-the-glass without a reason', client('hospital', ALL, { purposeOfUse: 'ETREAT' }), interaction('read', 'Patient'), [403, 'forbidden', 'Break-the-glass access (purpose ETREAT) needs a reason in the X-Break-Glass-Reason header']],
    ['break-the-glass with a blank reason', client('hospital', ALL, { purposeOfUse: 'ETREAT', breakGlassReason: '  ' }), interaction('read', 'Patient'), [403, 'forbidden', 'Break-the-glass access (purpose ETREAT) needs a reason in the X-Break-Glass-Reason header']],
    ['break-the-glass with a reason', client('hospital', ALL, { purposeOfUse: 'ETREAT', breakGlassReason: 'unconscious patient' }), interaction('read', 'Patient'), 'allowed'],
    ['hospital submits a transaction', client('hospital', []), interaction('transaction'), 'allowed'],
    ['hospital submits a batch', client('hospital', []), interaction('batch'), 'allowed'],
    ['auditor may not submit a batch', client('auditor', ALL), interaction('batch'), [403, 'forbidden', 'The auditor role may not submit batch or transaction Bundles']],
  ] as const)('%s', (_name, principal, i, decision) => {
    expect(decide(principal as Principal, i)).toEqual(decision);
  });
});

describe('SMART authorization: operations declare their roles and scopes', () => {
  const reindex: OperationDeclaration = { name: 'reindex', levels: ['system', 'type', 'instance'], roles: ['admin'], scopes: ['{type}.u', '*.r'] } as unknown as OperationDeclaration;
  const patientRead: OperationDeclaration = { name: 'everything', levels: ['type'], roles: ['admin'], scopes: ['Patient.r'] } as unknown as OperationDeclaration;
  const op = (resourceType: string | undefined, declaration?: OperationDeclaration) => interaction('operation', resourceType, { operation: 'reindex', method: 'POST', operationDeclaration: declaration });

  it.each([
    ['an undeclared operation is not supported', client('admin', ALL), op('Patient'), [404, 'not-supported', 'Operation $reindex is not supported by this server']],
    ['a role the operation does not list', client('hospital', ALL), op('Patient', reindex), [403, 'forbidden', 'The hospital role may not invoke $reindex']],
    ['every declared scope held', client('admin', ['system/*.cruds']), op('Patient', reindex), 'allowed'],
    ['{type} is the type it is invoked on', client('admin', ['system/Observation.u', 'system/*.r']), op('Patient', reindex), [403, 'forbidden', '$reindex needs a granted scope allowing system/Patient.u']],
    ['{type} at system level is any type', client('admin', ['system/Patient.u', 'system/*.r']), op(undefined, reindex), [403, 'forbidden', '$reindex needs a granted scope allowing system/*.u']],
    ['* needs a wildcard scope', client('admin', ['system/Patient.cruds']), op('Patient', reindex), [403, 'forbidden', '$reindex needs a granted scope allowing system/*.r']],
    ['a restricted scope does not count', client('admin', ['system/Patient.u?gender=female', 'system/*.r']), op('Patient', reindex), [403, 'forbidden', '$reindex needs a granted scope allowing system/Patient.u']],
    ['a declared scope naming a type needs that type', client('admin', ['system/Observation.r']), op('Patient', patientRead), [403, 'forbidden', '$everything needs a granted scope allowing system/Patient.r']],
    ['a declared scope naming a type, held', client('admin', ['system/Patient.r']), op('Observation', patientRead), 'allowed'],
    ['scopes it cannot parse are skipped, not fatal', client('admin', ['openid', 'patient/*.*', 'system/*.cruds']), op('Patient', reindex), 'allowed'],
    ['one granted scope per declared scope is enough', client('admin', ['system/Observation.r', 'system/Patient.u', 'system/*.r']), op('Patient', reindex), 'allowed'],
    ['an operation without a name or declaration', client('admin', ALL), interaction('operation', 'Patient'), [404, 'not-supported', 'Operation $ is not supported by this server']],
    ['an undeclared operation name is cut to 64 characters', client('admin', ALL), interaction('operation', 'Patient', { operation: 'x'.repeat(100) }), [404, 'not-supported', `Operation $${'x'.repeat(64)} is not supported by this server`]],
  ] as const)('%s', (_name, principal, i, decision) => {
    expect(decide(principal, i)).toEqual(decision);
  });
});

describe('SMART authorization: scopes restricted by a query', () => {
  const render = (fragments: readonly AccessFragment[]): [string, unknown[]] => {
    const p = new SqlParams();
    return [fragments.map((f) => f.render('r', p, 'current')).join(' AND ').replace(/\s+/g, ' '), p.values];
  };
  const lab = client('hospital', ['system/Observation.rs?category=laboratory']);

  it('read and search get the restriction as one access fragment', () => {
    for (const kind of ['read', 'search-type'] as const) {
      const fragments = auth.authorize(lab, interaction(kind, 'Observation'));
      expect(fragments).toHaveLength(1);
      expect(fragments[0]).toEqual(expect.objectContaining({ basis: 'scope', description: 'scope system/Observation.rs?category=laboratory', rows: ['current'] }));
      expect(render(fragments)).toEqual([
        '(r.resource_type <> $4 OR (r.id IN (SELECT x1.id FROM search_token x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.code = $3))))',
        ['Observation', 'category', 'laboratory', 'Observation'],
      ]);
    }
  });

  it('every other interaction needs an unrestricted scope', () => {
    for (const [kind, verb] of [['vread', 'r'], ['history-instance', 'r']] as const) {
      expect(decide(lab, interaction(kind, 'Observation'))).toEqual([
        403,
        'forbidden',
        `Granted scope system/Observation.rs?category=laboratory limits Observation to matching resources and allows only read and search, not ${kind}`,
      ]);
      void verb;
    }
    const writer = client('hospital', ['system/Observation.cruds?category=laboratory']);
    expect(decide(writer, interaction('update', 'Observation'))).toEqual([
      403,
      'forbidden',
      'Granted scope system/Observation.cruds?category=laboratory limits Observation to matching resources and allows only read and search, not update',
    ]);
  });

  it('an unrestricted scope for the same type and verb lifts the restriction', () => {
    const both = client('hospital', ['system/Observation.rs?category=laboratory', 'system/Observation.rs']);
    expect(auth.authorize(both, interaction('search-type', 'Observation'))).toEqual([]);
    const wildcard = client('hospital', ['system/Observation.rs?category=laboratory', 'system/*.rs']);
    expect(auth.authorize(wildcard, interaction('read', 'Observation'))).toEqual([]);
    // An unrestricted scope with another verb does not.
    const other = client('hospital', ['system/Observation.rs?category=laboratory', 'system/Observation.cud']);
    expect(auth.authorize(other, interaction('read', 'Observation'))).toHaveLength(1);
  });

  it('restrictions of other types still bound a search across types, and alternatives of one type are OR-ed', () => {
    const mixed = client('hospital', ['system/*.rs', 'system/Observation.rs?category=laboratory']);
    expect(auth.authorize(mixed, interaction('search-system'))).toEqual([]);
    const two = client('hospital', ['system/Patient.rs', 'system/Observation.rs?category=laboratory', 'system/Observation.rs?category=vital-signs']);
    const fragments = auth.authorize(two, interaction('search-type', 'Patient'));
    expect(render(fragments)).toEqual([
      '(r.resource_type <> $7 OR (r.id IN (SELECT x1.id FROM search_token x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.code = $3)))' +
        ' OR (r.id IN (SELECT x2.id FROM search_token x2 WHERE x2.resource_type = $4 AND x2.param = $5 AND (x2.code = $6))))',
      ['Observation', 'category', 'laboratory', 'Observation', 'category', 'vital-signs', 'Observation'],
    ]);
    // A restricted scope without the verb asked for does not bound it: searching needs `s`.
    const readOnly = client('hospital', ['system/Patient.rs', 'system/Observation.r?category=laboratory']);
    expect(auth.authorize(readOnly, interaction('search-type', 'Patient'))).toEqual([]);
    expect(auth.authorize(readOnly, interaction('read', 'Patient'))).toHaveLength(1);
    // Writes carry no read restriction.
    expect(auth.authorize(client('hospital', ['system/Patient.cruds', 'system/Observation.rs?category=laboratory']), interaction('create', 'Patient'))).toEqual([]);
  });

  it('an unrestricted scope beside a restricted one allows writes and version reads, with no restriction', () => {
    const both = client('hospital', ['system/Observation.rs?category=laboratory', 'system/Observation.cruds']);
    for (const kind of ['vread', 'history-instance', 'update', 'delete', 'create'] as const) {
      expect([kind, auth.authorize(both, interaction(kind, 'Observation'))]).toEqual([kind, []]);
    }
  });

  it('writes carry no restriction, even from restricted scopes that hold the write verb', () => {
    const writer = client('hospital', ['system/Patient.cruds', 'system/Observation.cruds?category=laboratory']);
    for (const kind of ['create', 'update', 'patch', 'delete'] as const) {
      expect([kind, auth.authorize(writer, interaction(kind, 'Patient'))]).toEqual([kind, []]);
    }
    // The same principal's read of Patient is bounded by the Observation restriction.
    expect(auth.authorize(writer, interaction('read', 'Patient')).map((f) => f.description)).toEqual(['scope system/Observation.cruds?category=laboratory']);
  });

  it('a compartment search is a search, bounded by the restriction', () => {
    const fragments = auth.authorize(lab, interaction('search-compartment', 'Observation'));
    expect(fragments.map((f) => f.description)).toEqual(['scope system/Observation.rs?category=laboratory']);
  });

  it('names a long restricted scope by its first 120 characters', () => {
    const long = `system/Observation.rs?category=${'a'.repeat(200)}`;
    expect(decide(client('hospital', [long]), interaction('vread', 'Observation'))).toEqual([
      403,
      'forbidden',
      `Granted scope ${long.slice(0, 120)} limits Observation to matching resources and allows only read and search, not vread`,
    ]);
  });
});
