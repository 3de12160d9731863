import { randomUUID } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import type { Person } from '@medplum/fhirtypes';
import type { EntityManager } from 'typeorm';
import { relink } from '../consent/patient-link-materializer';
import type { AccessContext } from '../fhir/pipeline/access-context';
import { ResourceRepository, StoredVersion, versionWrite } from '../fhir/storage/resource.repository';
import { IDENTITY_CONFIG, IdentityConfig } from './identity-config';

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
    @Inject(IDENTITY_CONFIG) private readonly config: IdentityConfig,
  ) {}

  /** Changes of one Person take turns (its content is read, changed and written). */
  async lock(tx: EntityManager, personId: string): Promise<void> {
    await tx.query(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, [`identity-person:${personId}`]);
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

  /** Whether an HIE admin declared `patientId` a different person from any of `others` (NO_MATCH). */
  async noMatchWithAny(tx: EntityManager, patientId: string, others: readonly string[]): Promise<boolean> {
    if (!others.length) return false;
    const rows: unknown[] = await tx.query(
      `SELECT 1 FROM identity_no_match
        WHERE (patient_id = $1 AND candidate_id = ANY($2::text[])) OR (candidate_id = $1 AND patient_id = ANY($2::text[])) LIMIT 1`,
      [patientId, others],
    );
    return rows.length > 0;
  }

  /** Keeps "these are NOT the same person" for every pair across the two groups (idempotent). */
  async recordNoMatch(tx: EntityManager, left: readonly string[], right: readonly string[], decidedBy: string): Promise<void> {
    if (!left.length || !right.length) return;
    await tx.query(
      `INSERT INTO identity_no_match (patient_id, candidate_id, decided_by)
       SELECT DISTINCT least(l, r), greatest(l, r), $3 FROM unnest($1::text[]) AS a(l), unnest($2::text[]) AS b(r) WHERE l <> r
       ON CONFLICT DO NOTHING`,
      [left, right, decidedBy],
    );
  }

  /** Withdraws NO_MATCH decisions among these Patients (an admin confirmed they are one person). */
  async forgetNoMatch(tx: EntityManager, patients: readonly string[]): Promise<void> {
    await tx.query(`DELETE FROM identity_no_match WHERE patient_id = ANY($1::text[]) AND candidate_id = ANY($1::text[])`, [patients]);
  }
}
