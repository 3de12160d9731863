import { Inject, Injectable, OnModuleInit } from '@nestjs/common';
import type { OperationDefinition, Parameters, Person } from '@medplum/fhirtypes';
import type { EntityManager } from 'typeorm';
import { FhirError } from '../common/fhir-error';
import type { AccessContext } from '../fhir/pipeline/access-context';
import { SystemAccess } from '../fhir/pipeline/system-access';
import type { AuditEntity, InteractionResult, OperationInteraction } from '../fhir/pipeline/interaction';
import { FhirOperation, OperationLevel } from '../fhir/operations/fhir-operation';
import { shippedOperationDefinition } from '../fhir/operations/operation-definitions';
import type { OperationInput } from '../fhir/operations/operation-parameters';
import { OperationRegistry } from '../fhir/operations/operation.registry';
import { ResourceRepository, StoredVersion } from '../fhir/storage/resource.repository';
import type { StorageSession } from '../fhir/storage/storage-session';
import { IDENTITY_CONFIG, IdentityConfig } from './identity-config';
import { IdentityLinkRepository } from './identity-link.repository';
import { linkedPatientsOf, PersonLinks, PersonState } from './person-links';

const REF_RE = (type: string) => new RegExp(`^${type}/([A-Za-z0-9\\-.]{1,64})$`);

/** What one admin operation changed: the Persons written and the Patients whose links moved. */
interface Changed {
  persons: { state: PersonState; version?: StoredVersion }[];
  patients: string[];
  reason: string;
}

/**
 * The HIE admins' Person operations (docs/identity.md, Admin operations): R4 has no `$merge` for
 * Person, so the exchange defines `$link`, `$unlink`, `$split` and `$merge` on Person, each with its
 * OperationDefinition. HIE admin role only; each runs in the interaction's transaction under the
 * named system context `identity-matching` on behalf of the admin (the admin reads no patient data:
 * the answer names Patients by reference only), writes new Person versions (history: the earlier
 * links stay readable; no Patient is ever rewritten, so an undone link loses no data) and is
 * audited as an update naming the Persons and Patients it changed.
 */
// Injectable so its constructor's parameter types are emitted: the operations below inherit it.
@Injectable()
abstract class PersonAdminOperation extends FhirOperation implements OnModuleInit {
  override readonly resourceTypes = ['Person'];
  readonly affectsState = true;
  readonly roles = ['admin'] as const;
  override readonly auditAction = 'U' as const;

  constructor(
    protected readonly operations: OperationRegistry,
    protected readonly system: SystemAccess,
    protected readonly repository: ResourceRepository,
    protected readonly persons: PersonLinks,
    protected readonly links: IdentityLinkRepository,
    @Inject(IDENTITY_CONFIG) protected readonly config: IdentityConfig,
  ) {
    super();
  }

  onModuleInit(): void {
    this.operations.register(this);
  }

  protected abstract change(sys: AccessContext, tx: EntityManager, i: OperationInteraction, input: OperationInput, decidedBy: string): Promise<Changed>;

  async execute(ctx: AccessContext, i: OperationInteraction, { tx }: StorageSession, input: OperationInput): Promise<InteractionResult> {
    // Persons are the exchange's records: written as its organization, on behalf of the admin (audited).
    const sys = await this.system.mint('identity-matching', { ...ctx.principal, organization: this.config.exchangeOrganization });
    const changed = await this.change(sys, tx, i, input, `admin:${ctx.principal.clientId ?? 'unknown'}`);
    const parameters: Parameters = {
      resourceType: 'Parameters',
      parameter: changed.persons.map(({ state, version }) => ({ name: 'person', resource: (version?.resource ?? state.person) as Person })),
    };
    const touched: AuditEntity[] = [
      ...changed.persons.map(({ state, version }) => ({ reference: `Person/${state.id}`, versionId: version ? String(version.versionId) : undefined, patients: version?.compartments ?? [] })),
      ...[...new Set(changed.patients)].map((p) => ({ reference: `Patient/${p}`, patients: [p] })),
    ];
    return { status: 200, resource: parameters, touched, writeDecision: { policy: 'identity-admin', permit: true, reason: changed.reason } };
  }

  /** The `patient` references given, as ids of stored Patients (422 naming the first unknown one). */
  protected async patients(sys: AccessContext, tx: EntityManager, input: OperationInput, name = 'patient'): Promise<string[]> {
    const ids: string[] = [];
    for (const p of input.all(name)) {
      const m = REF_RE('Patient').exec(p.valueReference?.reference ?? '');
      if (!m) throw FhirError.badRequest(`${name} needs a valueReference to Patient/{id}`, [name]);
      const stored = await this.repository.readCurrent(sys, 'Patient', m[1], tx);
      if (!stored || stored.deleted) throw new FhirError(422, 'not-found', `${name}: there is no Patient/${m[1]}`, [name]);
      if (!ids.includes(m[1])) ids.push(m[1]);
    }
    return ids;
  }

  /** The Person this instance-level call names, locked; 404 when there is none (or it was merged away). */
  protected async target(sys: AccessContext, tx: EntityManager, id: string): Promise<PersonState> {
    await this.persons.lock(tx, id);
    const state = await this.persons.read(sys, tx, id);
    if (!state.current || state.current.deleted) throw FhirError.notFound(`Person/${id} is not known`);
    if (state.person.active === false) throw new FhirError(422, 'business-rule', `Person/${id} is inactive (merged into another Person)`, ['Person']);
    return state;
  }

  /**
   * The Person `id` (locked), its Patients that stay and the given ones that leave, with NO_MATCH
   * kept between the two groups (`$unlink`, `$split`); `keepOne`: 422 when none would stay.
   */
  protected async separate(sys: AccessContext, tx: EntityManager, id: string, input: OperationInput, decidedBy: string, keepOne = false): Promise<{ state: PersonState; stay: string[]; leave: string[] }> {
    const patients = await this.patients(sys, tx, input);
    const state = await this.target(sys, tx, id);
    const { stay, leave } = partition(state, patients);
    if (keepOne && !stay.length) throw new FhirError(422, 'business-rule', `patient: splitting every Patient out leaves Person/${state.id} empty; use $unlink`, ['patient']);
    await this.links.recordNoMatch(tx, leave, stay, decidedBy);
    return { state, stay, leave };
  }

  /** Each Patient's Person, from the bookkeeping (one Person per Patient). */
  protected async personsOf(tx: EntityManager, patients: readonly string[]): Promise<Map<string, string>> {
    return new Map((await this.links.linksOf(tx, patients)).map((r) => [r.patient_id, r.person_id]));
  }

  /** Sets the Person's links (admin-confirmed ones level4), writes it and keeps the bookkeeping. */
  protected async save(sys: AccessContext, tx: EntityManager, state: PersonState, links: NonNullable<Person['link']>, decidedBy: string, confirmed: readonly string[], extra: Partial<Person> = {}): Promise<{ state: PersonState; version?: StoredVersion }> {
    const version = await this.persons.write(sys, tx, state, { ...state.person, ...extra, link: links });
    const members = linkedPatientsOf({ link: links });
    await this.links.keepOnly(tx, state.id, members);
    await this.links.confirm(tx, confirmed, state.id, decidedBy);
    return { state, version };
  }
}

const patientLink = (id: string): NonNullable<Person['link']>[number] => ({ target: { reference: `Patient/${id}` }, assurance: 'level4' });
const withConfirmed = (links: NonNullable<Person['link']>, confirmed: readonly string[]) => [
  ...links.filter((l) => !confirmed.some((c) => l.target?.reference === `Patient/${c}`)),
  ...confirmed.map(patientLink),
];

/**
 * `$link`: an admin confirms that Patients are one person (assurance level4). At instance level
 * into that Person; at type level into the Person the given Patients have (or a new one). A Patient
 * in another Person is refused (422: join Persons with `$merge`). NO_MATCH decisions among them are
 * withdrawn (the admin now says they are the same).
 */
@Injectable()
export class PersonLinkOperation extends PersonAdminOperation {
  readonly name = 'link';
  readonly definition: OperationDefinition = shippedOperationDefinition('person-link');
  readonly levels: readonly OperationLevel[] = ['type', 'instance'];

  protected async change(sys: AccessContext, tx: EntityManager, i: OperationInteraction, input: OperationInput, decidedBy: string): Promise<Changed> {
    const patients = await this.patients(sys, tx, input);
    const current = await this.personsOf(tx, patients);
    const theirs = [...new Set(current.values())].sort();
    let personId = i.id;
    if (!personId) {
      if (theirs.length > 1) throw new FhirError(422, 'business-rule', `patient: the Patients are in ${theirs.length} Persons (${theirs.map((p) => `Person/${p}`).join(', ')}); join them with $merge`, ['patient']);
      if (patients.length < 2 && !theirs.length) throw FhirError.badRequest('patient: a new Person needs at least two Patients', ['patient']);
      personId = theirs[0];
    }
    const state = personId ? await this.target(sys, tx, personId) : await this.newPerson(sys, tx);
    const elsewhere = patients.filter((p) => current.has(p) && current.get(p) !== state.id);
    if (elsewhere.length) throw new FhirError(422, 'business-rule', `patient: Patient/${elsewhere[0]} is linked to Person/${current.get(elsewhere[0])}; join the Persons with $merge`, ['patient']);
    const members = [...new Set([...linkedPatientsOf(state.person), ...patients])];
    await this.links.forgetNoMatch(tx, members);
    const saved = await this.save(sys, tx, state, withConfirmed(state.person.link ?? [], patients), decidedBy, patients);
    return { persons: [saved], patients, reason: `admin confirmed ${patients.map((p) => `Patient/${p}`).join(', ')} as Person/${state.id} (level4)` };
  }

  private async newPerson(sys: AccessContext, tx: EntityManager): Promise<PersonState> {
    const state = await this.persons.read(sys, tx);
    await this.persons.lock(tx, state.id);
    return state;
  }
}

/**
 * `$unlink`: the given Patients leave the Person, and the decision that each is NOT the person of
 * the Patients that stay is kept (`identity_no_match`), so matching after write never links them
 * again. The Person keeps its history; a Person left without links is kept, inactive.
 */
@Injectable()
export class PersonUnlinkOperation extends PersonAdminOperation {
  readonly name = 'unlink';
  readonly definition: OperationDefinition = shippedOperationDefinition('person-unlink');
  readonly levels: readonly OperationLevel[] = ['instance'];

  protected async change(sys: AccessContext, tx: EntityManager, i: OperationInteraction, input: OperationInput, decidedBy: string): Promise<Changed> {
    const { state, stay, leave } = await this.separate(sys, tx, i.id!, input, decidedBy);
    const saved = await this.save(sys, tx, state, keep(state, stay), decidedBy, [], stay.length ? {} : { active: false });
    return { persons: [saved], patients: leave, reason: `admin unlinked ${leave.map((p) => `Patient/${p}`).join(', ')} from Person/${state.id} (no match kept)` };
  }
}

/**
 * `$split`: the given Patients move out of the Person into a new Person of their own (their links
 * level4), and NO_MATCH is kept between the two groups.
 */
@Injectable()
export class PersonSplitOperation extends PersonAdminOperation {
  readonly name = 'split';
  readonly definition: OperationDefinition = shippedOperationDefinition('person-split');
  readonly levels: readonly OperationLevel[] = ['instance'];

  protected async change(sys: AccessContext, tx: EntityManager, i: OperationInteraction, input: OperationInput, decidedBy: string): Promise<Changed> {
    const { state, stay, leave } = await this.separate(sys, tx, i.id!, input, decidedBy, true);
    const kept = await this.save(sys, tx, state, keep(state, stay), decidedBy, []);
    const fresh = await this.persons.read(sys, tx);
    await this.persons.lock(tx, fresh.id);
    const made = await this.save(sys, tx, fresh, leave.map(patientLink), decidedBy, leave);
    return { persons: [kept, made], patients: leave, reason: `admin split ${leave.map((p) => `Patient/${p}`).join(', ')} from Person/${state.id} into Person/${fresh.id} (no match kept)` };
  }
}

/**
 * `$merge`: the `source` Person's Patients join this Person (level4: the admin says they are one
 * person), NO_MATCH decisions among them are withdrawn, and the source is kept as an inactive
 * Person whose one link names the surviving Person (its history keeps its former links).
 */
@Injectable()
export class PersonMergeOperation extends PersonAdminOperation {
  readonly name = 'merge';
  readonly definition: OperationDefinition = shippedOperationDefinition('person-merge');
  readonly levels: readonly OperationLevel[] = ['instance'];

  protected async change(sys: AccessContext, tx: EntityManager, i: OperationInteraction, input: OperationInput, decidedBy: string): Promise<Changed> {
    const m = REF_RE('Person').exec(input.all('source')[0]?.valueReference?.reference ?? '');
    if (!m) throw FhirError.badRequest('source needs a valueReference to Person/{id}', ['source']);
    if (m[1] === i.id) throw FhirError.badRequest('source: a Person cannot be merged into itself', ['source']);
    // Both Persons locked in one order, so two merges of the same pair never deadlock.
    const [first, second] = [i.id!, m[1]].sort();
    await this.persons.lock(tx, first);
    await this.persons.lock(tx, second);
    const survivor = await this.target(sys, tx, i.id!);
    const source = await this.persons.read(sys, tx, m[1]);
    if (!source.current || source.current.deleted || source.person.active === false) throw new FhirError(422, 'not-found', `source: there is no active Person/${m[1]}`, ['source']);
    const moved = linkedPatientsOf(source.person);
    const members = [...new Set([...linkedPatientsOf(survivor.person), ...moved])];
    await this.links.forgetNoMatch(tx, members);
    // The source first: its Patients leave its linked records before they join the survivor's.
    const retired = await this.save(sys, tx, source, [{ target: { reference: `Person/${survivor.id}` }, assurance: 'level4' }], decidedBy, [], { active: false });
    const kept = await this.save(sys, tx, survivor, withConfirmed(survivor.person.link ?? [], moved), decidedBy, moved);
    return { persons: [kept, retired], patients: moved, reason: `admin merged Person/${source.id} into Person/${survivor.id} (${moved.length} Patients, level4)` };
  }
}

/** The Person's Patients that stay and the given ones that leave (each must be linked to it). */
function partition(state: PersonState, patients: readonly string[]): { stay: string[]; leave: string[] } {
  const members = linkedPatientsOf(state.person);
  const stranger = patients.find((p) => !members.includes(p));
  if (stranger) throw new FhirError(422, 'business-rule', `patient: Patient/${stranger} is not linked to Person/${state.id}`, ['patient']);
  return { stay: members.filter((p) => !patients.includes(p)), leave: [...patients] };
}

/** The Person's links without those of Patients that leave (other links, e.g. to a Person, stay). */
function keep(state: PersonState, stay: readonly string[]): NonNullable<Person['link']> {
  return (state.person.link ?? []).filter((l) => {
    const id = /^Patient\/(.+)$/.exec(l.target?.reference ?? '')?.[1];
    return !id || stay.includes(id);
  });
}
