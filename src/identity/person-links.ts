import { randomUUID } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import type { Person } from '@medplum/fhirtypes';
import type { EntityManager } from 'typeorm';
import { relink, relinkMany } from '../consent/patient-link-materializer';
import type { AccessContext } from '../fhir/pipeline/access-context';
import { ResourceRepository, StoredVersion, versionWrite } from '../fhir/storage/resource.repository';
import { IDENTITY_CONFIG, IdentityConfig } from './identity-config';
import { IdentityLinkRepository } from './identity-link.repository';

export type PersonLink = NonNullable<Person['link']>[number];

/** The Patient ids a Person links (in link order). */
export function linkedPatientsOf(person: Pick<Person, 'link'> | undefined): string[] {
  return (person?.link ?? []).map((l) => /^Patient\/(.+)$/.exec(l.target?.reference ?? '')?.[1]).filter((x): x is string => !!x);
}

/** A Person as read for a change: its stored version (none for a new one) and its content. */
export interface PersonState {
  id: string;
  current?: StoredVersion;
  person: Person;
}

/**
 * The one place a Person's links change (docs/identity.md): matching after write and the HIE
 * admins' operations both read, change and write a Person here. A Person is an ordinary stored
 * resource (custodian: the exchange), written through `ResourceRepository.write`, so every change is
 * a new version in its history and fires the normal write events (validate, pre-commit,
 * post-commit: what a Subscription on `Person?link=Patient/x` is notified by). Its links feed
 * consent's linked records (`relink`, source `Person/{id}`) and the bookkeeping
 * `identity_person_link` (one Person per Patient).
 */
@Injectable()
export class PersonLinks {
  constructor(
    private readonly repository: ResourceRepository,
    private readonly links: IdentityLinkRepository,
    @Inject(IDENTITY_CONFIG) private readonly config: IdentityConfig,
  ) {}

  /** Changes of one Person take turns (its content is read, changed and written). */
  lock(tx: EntityManager, personId: string): Promise<void> {
    return this.links.lockPerson(tx, personId);
  }

  /** The Person to change (after `lock`); a new, empty one when `personId` names none. */
  async read(ctx: AccessContext, tx: EntityManager, personId: string = randomUUID()): Promise<PersonState> {
    const current = await this.repository.readCurrent(ctx, 'Person', personId, tx);
    if (current?.resource && !current.deleted) return { id: personId, current, person: current.resource as Person };
    return {
      id: personId,
      current: current ?? undefined,
      person: { resourceType: 'Person', id: personId, active: true, managingOrganization: { reference: `Organization/${this.config.exchangeOrganization}` } },
    };
  }

  /** Writes the Person's new content (a new version) and feeds the linked records. */
  async write(ctx: AccessContext, tx: EntityManager, state: PersonState, after: Person): Promise<StoredVersion | undefined> {
    const exists = !!state.current && !state.current.deleted;
    const body: Person = { ...after, resourceType: 'Person', id: state.id };
    if (!body.link?.length) delete body.link;
    const result = await this.repository.write(ctx, versionWrite(ctx, exists ? 'update' : 'create', exists ? 'PUT' : 'POST', body, state.id), tx);
    await this.feedLinkedRecords(tx, state.id, linkedPatientsOf(state.person), linkedPatientsOf(body));
    return result.version;
  }

  /**
   * Consent's linked records: the Person's first Patient asserts the others (source Person/{id}).
   * The old star is withdrawn first, since its centre may be the Patient that left.
   */
  async feedLinkedRecords(tx: EntityManager, personId: string, before: readonly string[], after: readonly string[]): Promise<void> {
    const [oldCentre] = before;
    if (oldCentre && oldCentre !== after[0]) await relink(tx, `Person/${personId}`, oldCentre, []);
    if (after.length) await relink(tx, `Person/${personId}`, after[0], after.slice(1).sort());
  }

  /** Consent's linked records of new Persons (their first Patient asserts the others), in one `relinkMany`. */
  async feedNewPersons(tx: EntityManager, persons: readonly { personId: string; linked: readonly string[] }[]): Promise<void> {
    await relinkMany(
      tx,
      persons.map((p) => ({ source: `Person/${p.personId}`, patientId: p.linked[0], linked: p.linked.slice(1) })),
    );
  }
}
