import { randomUUID } from 'node:crypto';
import { Inject, Injectable, Logger, OnModuleInit } from '@nestjs/common';
import type { Person, Task } from '@medplum/fhirtypes';
import type { EntityManager } from 'typeorm';
import type { AccessContext } from '../fhir/pipeline/access-context';
import { SystemAccess } from '../fhir/pipeline/system-access';
import type { Principal } from '../fhir/pipeline/principal';
import { ResourceRepository, versionWrite } from '../fhir/storage/resource.repository';
import { StorageSession, StorageSessions } from '../fhir/storage/storage-session';
import { PATIENT_LINK_MAX } from '../consent/patient-link-materializer';
import { JobQueue, QueuedJob } from '../jobs/job-queue';
import { transposedBirthDate } from './demographics';
import { IDENTITY_CONFIG, IdentityConfig } from './identity-config';
import { IdentityLinkRepository } from './identity-link.repository';
import { MatchScore, scoreMatch } from './match-scorer';
import { CandidateDemographics, PatientDemographicsRepository } from './patient-demographics.repository';
import { linkedPatientsOf, PersonLinks } from './person-links';

/** The outbox queue of matching after a Patient write (data: the Patient id only, never demographics). */
export const IDENTITY_MATCH_QUEUE = 'identity.match';
/** Matching jobs taken together at most (one fetch); a full batch fetches again at once. */
export const MATCH_BATCH_SIZE = 100;
/** How long a committed matching job waits at most for the next poll, idle queue (matching's added latency). */
export const MATCH_BATCH_POLL_SECONDS = 1;
export const REVIEW_TASK_CODE = { system: 'http://hie.example.org/fhir/CodeSystem/identity-task', code: 'identity-review' };

/** Patients `matchChunk` matches in one transaction. */
export const NEW_PERSON_CHUNK = 250;

/**
 * A Patient `matchChunk` can match set-based: its certain matches either all have a Person already
 * or none has one yet (`newPerson`: then it gets one), and its probable matches are asked about.
 */
interface ChunkPlan {
  self: CandidateDemographics;
  /** In patient id order. */
  certain: { patientId: string; score: number }[];
  probable: { patientId: string; s: MatchScore }[];
  newPerson: boolean;
}

/** The key of a pair of Patients, in the order identity_review and identity_no_match keep it. */
function pairKey(x: string, y: string): string {
  return x < y ? `${x}|${y}` : `${y}|${x}`;
}

/** A person's blocking keys (its birth date and their transposition), sorted: the locks' global order. */
function blockingKeysOf(d: CandidateDemographics): string[] {
  return d.birthDate ? [d.birthDate, transposedBirthDate(d.birthDate)].filter((k): k is string => !!k).sort() : ['no-birth-date'];
}

export interface IdentityMatchJobData {
  patientId: string;
}

/** Counts of one matching run (ids and numbers only: what the logs carry). */
export interface MatchOutcome {
  linked: number;
  review: number;
  unlinked: number;
  /** Patients that went through the locked `match`. */
  matched: number;
  /** Patients whose bulk read showed nothing to change. */
  skipped: number;
}

/**
 * Matching after write (docs/identity.md): one job per Patient write, run in a transaction of its
 * own under the `identity-matching` system context on behalf of the exchange. Serialized per
 * person on the Patient's blocking keys (advisory locks on its birth date and their transposition,
 * taken in sorted order), so two organizations registering one person at once produce one Person.
 * Certain matches at other organizations are linked into one Person (custodian: the exchange,
 * assurance level3) whose links feed consent's `patient_link_assertion` (source `Person/{id}`);
 * probable ones become a review Task for HIE admins (once per pair). Idempotent: a rerun finds the
 * links and tasks it made.
 */
@Injectable()
export class IdentityMatchingJob implements OnModuleInit {
  private readonly logger = new Logger('IdentityMatching');

  constructor(
    private readonly jobs: JobQueue,
    private readonly sessions: StorageSessions,
    private readonly system: SystemAccess,
    private readonly repository: ResourceRepository,
    private readonly demographics: PatientDemographicsRepository,
    private readonly persons: PersonLinks,
    private readonly links: IdentityLinkRepository,
    @Inject(IDENTITY_CONFIG) private readonly config: IdentityConfig,
  ) {}

  async onModuleInit(): Promise<void> {
    // No NOTIFY: the jobs of the writes committed between two polls are matched together (one
    // mint, one blocking statement), which keeps matching's CPU per Patient small beside the API.
    this.jobs.define(IDENTITY_MATCH_QUEUE, { retryLimit: 5, retryDelaySeconds: 1, retryBackoff: true, retryDelayMaxSeconds: 60, expireInSeconds: 300, notify: false });
    await this.jobs.workBatch<IdentityMatchJobData>(IDENTITY_MATCH_QUEUE, (jobs) => this.runBatch(jobs), {
      concurrency: 2,
      batchSize: MATCH_BATCH_SIZE,
      pollSeconds: MATCH_BATCH_POLL_SECONDS,
    });
  }

  /** Enqueues matching of a Patient in the write's transaction (the outbox). */
  async enqueue(tx: EntityManager, patientId: string): Promise<void> {
    await this.jobs.enqueue<IdentityMatchJobData>(tx, IDENTITY_MATCH_QUEUE, { patientId });
  }

  private get exchange(): Principal {
    return { kind: 'system', clientId: 'system:identity-matching', organization: this.config.exchangeOrganization, scopes: [] };
  }

  async run(job: QueuedJob<IdentityMatchJobData>): Promise<void> {
    const started = Date.now();
    const ctx = await this.system.mint('identity-matching', this.exchange);
    const outcome = await this.matchMany(ctx, [job.data.patientId]);
    // Ids, counts and timing only: no demographics in logs.
    this.logger.log({ msg: 'identity match', job: job.id, patient: job.data.patientId, ...outcome, ms: Date.now() - started });
  }

  /** The jobs of one fetch: one mint (one system-access audit record) and one `matchMany` for all. */
  async runBatch(jobs: QueuedJob<IdentityMatchJobData>[]): Promise<void> {
    const started = Date.now();
    const ctx = await this.system.mint('identity-matching', this.exchange);
    const outcome = await this.matchMany(
      ctx,
      jobs.map((j) => j.data.patientId),
    );
    // Ids, counts and timing only: no demographics in logs.
    this.logger.log({ msg: 'identity match batch', jobs: jobs.length, first: jobs[0]?.id, ...outcome, ms: Date.now() - started });
  }

  /**
   * Matches many Patients (the job after write, a batch page): one read of their rows and one
   * statement for all their blocking candidates, scored here; only a Patient whose match would change
   * something goes further. One that links nothing costs no lock and no write. Skipping without the
   * lock is safe: a concurrent registration this read did not see commits later, and its own job
   * then sees this Patient. The Patients that get a new Person or only have probable matches to ask
   * about (a bulk load's batch match is nearly all of them) are matched set-based, NEW_PERSON_CHUNK
   * at a time in one transaction (`matchChunk`); one joining an existing Person, or deleted, goes
   * through `match` (its blocking-key locks, a transaction of its own).
   */
  async matchMany(ctx: AccessContext, patientIds: readonly string[]): Promise<MatchOutcome> {
    const ids = [...new Set(patientIds)];
    const work = await this.sessions.run({ transactional: false }, ({ tx }) => this.withWork(ctx, tx, ids));
    const total: MatchOutcome = { linked: 0, review: 0, unlinked: 0, matched: work.pending.length, skipped: ids.length - work.pending.length };
    const oneByOne = work.pending.filter((id) => !work.chunked.has(id));
    const plans = [...work.chunked.values()];
    for (let i = 0; i < plans.length; i += NEW_PERSON_CHUNK) {
      const chunk = plans.slice(i, i + NEW_PERSON_CHUNK);
      try {
        const done = await this.sessions.run({ transactional: true }, (session) => this.matchChunk(ctx, session, chunk));
        total.linked += done.linked;
        total.review += done.review;
        oneByOne.push(...done.rest);
      } catch (e) {
        // Rolled back (a linked set over its bound, a deadlock): these take the one-by-one path,
        // which decides and reports each Patient on its own.
        this.logger.warn({ msg: 'identity match chunk fell back to one by one', patients: chunk.length, error: (e as Error).name });
        oneByOne.push(...chunk.map((p) => p.self.patientId));
      }
    }
    for (const patientId of oneByOne) {
      // One transaction per Patient: its blocking-key locks are held no longer than its own match.
      const outcome = await this.sessions.run({ transactional: true }, ({ tx }) => this.match(ctx, tx, patientId));
      total.linked += outcome.linked;
      total.review += outcome.review;
      total.unlinked += outcome.unlinked ?? 0;
    }
    return total;
  }

  /**
   * The Patients of `ids` whose `match` would change something: a deleted one (it leaves its
   * Person), one with a certain match when it or a match has no Person yet, one with a probable match
   * not yet asked about. Read in bulk; `match` (or `matchChunk`) decides again under its locks.
   * `chunked`: those `matchChunk` can take (not joining a Person that exists).
   */
  private async withWork(ctx: AccessContext, tx: EntityManager, ids: readonly string[]): Promise<{ pending: string[]; chunked: Map<string, ChunkPlan> }> {
    const found = await this.demographics.candidatesOfMany(ctx, tx, ids);
    const scored = new Map<string, { self: CandidateDemographics; certain: ChunkPlan['certain']; probable: ChunkPlan['probable'] }>();
    for (const [id, { self, candidates }] of found) {
      const certain: ChunkPlan['certain'] = [];
      const probable: ChunkPlan['probable'] = [];
      for (const c of candidates) {
        const s = scoreMatch(self, c, this.config);
        if (s.grade === 'certain') certain.push({ patientId: c.patientId, score: s.score });
        else if (s.grade === 'probable') probable.push({ patientId: c.patientId, s });
      }
      // In patient id order, as `match` takes them.
      const byId = (a: { patientId: string }, b: { patientId: string }): number => (a.patientId < b.patientId ? -1 : a.patientId > b.patientId ? 1 : 0);
      certain.sort(byId);
      probable.sort(byId);
      if (certain.length || probable.length) scored.set(id, { self, certain, probable });
    }
    const members = [...new Set([...scored].flatMap(([id, s]) => (s.certain.length ? [id, ...s.certain.map((c) => c.patientId)] : [])))];
    const linked = new Set((await this.links.linksOf(tx, members)).map((r) => r.patient_id));
    const pairs = [...scored].flatMap(([id, s]) => s.probable.map((c) => [id, c.patientId].sort() as [string, string]));
    const asked = await this.links.reviewedPairs(tx, pairs);
    const chunked = new Map<string, ChunkPlan>();
    const pending = ids.filter((id) => {
      if (!found.has(id)) return true;
      const s = scored.get(id);
      if (!s) return false;
      const group = [id, ...s.certain.map((c) => c.patientId)];
      const unlinked = group.filter((m) => !linked.has(m)).length;
      // A certain match where everyone already has a Person: `link` would change nothing.
      const linkWork = s.certain.length > 0 && unlinked > 0;
      const toAsk = s.probable.some((c) => !asked.has(pairKey(id, c.patientId)));
      if (!linkWork && !toAsk) return false;
      // Joining a Person that exists (some of the group has one) is `match`'s, under the Person's lock.
      const joinsPerson = linkWork && unlinked < group.length;
      if (!joinsPerson && group.length <= PATIENT_LINK_MAX + 1) chunked.set(id, { self: s.self, certain: s.certain, probable: s.probable, newPerson: linkWork });
      return true;
    });
    return { pending, chunked };
  }

  /**
   * A chunk of Patients matched set-based in the session's one transaction, with the outcome `match`
   * gives each: the chunk's blocking keys locked in one statement (the order `match` keeps), links,
   * NO_MATCH decisions and asked pairs read again under the locks; new Persons planned exactly as
   * `link` makes one (members in id order after the Patient, an HIE admin's NO_MATCH with anyone
   * already in kept, no Person of one) and claimed with one statement; review Tasks for the probable
   * pairs not yet asked (once per pair, not after a NO_MATCH), recorded with one statement; Persons
   * and Tasks created in bulk (one statement per CREATE_CHUNK, the same write events); consent's
   * linked records fed with one `relinkMany`. A Patient whose group meets a Person here (claimed
   * meanwhile by a job holding other keys, or by an earlier plan of the chunk) is returned in `rest`
   * for `match`, which joins it under the Person's lock and asks its questions.
   */
  private async matchChunk(ctx: AccessContext, session: StorageSession, chunk: readonly ChunkPlan[]): Promise<{ linked: number; review: number; rest: string[] }> {
    const tx = session.tx;
    await this.links.lockBlockingKeys(tx, chunk.flatMap((p) => blockingKeysOf(p.self)));
    const grouped = chunk.filter((p) => p.newPerson);
    const members = [...new Set(grouped.flatMap((p) => [p.self.patientId, ...p.certain.map((c) => c.patientId)]))];
    const taken = new Set((await this.links.linksOf(tx, members)).map((r) => r.patient_id));
    const involved = [...new Set([...members, ...chunk.flatMap((p) => [p.self.patientId, ...p.probable.map((c) => c.patientId)])])];
    const noMatch = await this.links.noMatchPairsAmong(tx, involved);
    const rest = new Set<string>();
    const persons: { personId: string; joined: string[]; score: Map<string, number> }[] = [];
    let linked = 0;
    for (const p of chunk) {
      linked += p.certain.length;
      if (!p.newPerson) continue;
      const group = [p.self.patientId, ...p.certain.map((c) => c.patientId)];
      if (group.some((m) => taken.has(m))) {
        rest.add(p.self.patientId);
        continue;
      }
      const joined: string[] = [];
      for (const m of group) if (!joined.some((j) => noMatch.has(pairKey(m, j)))) joined.push(m);
      // NO_MATCH left fewer than two: no Person of one (as `link` drops it).
      if (joined.length < 2) continue;
      for (const m of joined) taken.add(m);
      persons.push({ personId: randomUUID(), joined, score: new Map(p.certain.map((c) => [c.patientId, c.score])) });
    }
    const claimed = await this.links.claimAutomaticMany(
      tx,
      persons.flatMap((x) => x.joined.map((m) => ({ patientId: m, personId: x.personId, score: x.score.get(m) ?? null }))),
    );
    // A member linked by a job holding other blocking keys (an identifier match): that one goes one by one.
    const lost = persons.filter((x) => x.joined.some((m) => !claimed.has(m)));
    await this.links.releasePersons(tx, lost.map((x) => x.personId));
    for (const x of lost) rest.add(x.joined[0]);
    for (const p of chunk) if (rest.has(p.self.patientId)) linked -= p.certain.length;
    const written = persons.filter((x) => !lost.includes(x));
    // The probable pairs to ask about, once each, of the Patients decided here.
    const questions = new Map<string, { a: string; b: string; s: MatchScore }>();
    for (const p of chunk) {
      if (rest.has(p.self.patientId)) continue;
      for (const c of p.probable) {
        const key = pairKey(p.self.patientId, c.patientId);
        if (!questions.has(key) && !noMatch.has(key)) questions.set(key, { a: key.split('|')[0], b: key.split('|')[1], s: c.s });
      }
    }
    const asked = await this.links.reviewedPairs(tx, [...questions.values()].map((q) => [q.a, q.b] as [string, string]));
    const reviews = [...questions].filter(([key]) => !asked.has(key)).map(([, q]) => ({ ...q, taskId: randomUUID() }));
    const recorded = await this.links.recordReviews(tx, reviews.map((r) => ({ a: r.a, b: r.b, taskId: r.taskId, weight: r.s.weight })));
    this.repository.deferCreates(session);
    for (const x of written) {
      const body: Person = {
        resourceType: 'Person',
        id: x.personId,
        active: true,
        managingOrganization: { reference: `Organization/${this.config.exchangeOrganization}` },
        link: x.joined.map((m) => ({ target: { reference: `Patient/${m}` }, assurance: 'level3' as const })),
      };
      await this.repository.write(ctx, versionWrite(ctx, 'create', 'POST', body, x.personId), tx);
    }
    for (const r of reviews) {
      if (!recorded.has(pairKey(r.a, r.b))) continue;
      await this.repository.write(ctx, versionWrite(ctx, 'create', 'POST', this.reviewTask(r.taskId, r.a, r.b, r.s), r.taskId), tx);
    }
    await this.repository.flushCreates(tx);
    await this.persons.feedNewPersons(tx, written.map((x) => ({ personId: x.personId, linked: x.joined })));
    return { linked, review: recorded.size, rest: [...rest] };
  }

  /** Matches one Patient in `tx` (the batch match runs it for each Patient of a page). */
  async match(ctx: AccessContext, tx: EntityManager, patientId: string): Promise<{ linked: number; review: number; unlinked?: number }> {
    const first = await this.demographics.get(ctx, tx, patientId);
    // Deleted (its row went with the delete): it leaves its Person.
    if (!first) return { linked: 0, review: 0, unlinked: await this.unlinkDeleted(ctx, tx, patientId) };
    await this.lockBlockingKeys(tx, first);
    // Read again under the lock: a concurrent job for this person has committed by now.
    const self = (await this.demographics.get(ctx, tx, patientId))!;
    if (!self) return { linked: 0, review: 0 };
    const certain: { c: CandidateDemographics; s: MatchScore }[] = [];
    const probable: { c: CandidateDemographics; s: MatchScore }[] = [];
    for (const c of await this.demographics.candidates(ctx, tx, self, patientId)) {
      // Only Patients of other organizations: one organization's duplicates are its own to merge.
      if (c.custodianOrg === self.custodianOrg) continue;
      const s = scoreMatch(self, c, this.config);
      if (s.grade === 'certain') certain.push({ c, s });
      else if (s.grade === 'probable') probable.push({ c, s });
    }
    if (certain.length) await this.link(ctx, tx, self, certain);
    let review = 0;
    for (const { c, s } of probable) if (await this.requestReview(ctx, tx, self.patientId, c.patientId, s)) review++;
    return { linked: certain.length, review };
  }

  /** Advisory locks on the person's blocking keys, in one global order (no deadlock between jobs). */
  private async lockBlockingKeys(tx: EntityManager, d: CandidateDemographics): Promise<void> {
    for (const key of blockingKeysOf(d)) await this.links.lockBlockingKey(tx, key);
  }

  /** Joins the Patient and its certain matches in one Person (the first Person any of them has). */
  private async link(ctx: AccessContext, tx: EntityManager, self: CandidateDemographics, certain: { c: CandidateDemographics; s: MatchScore }[]): Promise<void> {
    const members = [self.patientId, ...certain.map((x) => x.c.patientId)];
    const existing = await this.links.linksOf(tx, members);
    // A Patient already in another Person stays there: joining two Persons is an admin's merge.
    const personId = existing[0]?.person_id ?? randomUUID();
    await this.lockPerson(tx, personId);
    const taken = new Set(existing.filter((e) => e.person_id !== personId).map((e) => e.patient_id));
    const joining = members.filter((m) => !taken.has(m));
    const scoreOf = new Map(certain.map((x) => [x.c.patientId, x.s.score]));
    const current = await this.repository.readCurrent(ctx, 'Person', personId, tx);
    const person: Person = current?.resource && !current.deleted
      ? (current.resource as Person)
      : { resourceType: 'Person', id: personId, active: true, managingOrganization: { reference: `Organization/${this.config.exchangeOrganization}` } };
    const links = [...(person.link ?? [])];
    let changed = !current || current.deleted === true;
    for (const m of joining) {
      if (links.some((l) => l.target?.reference === `Patient/${m}`)) continue;
      // An HIE admin's NO_MATCH with anyone already in the Person is kept: matching never overrides it.
      if (await this.links.noMatchWithAny(tx, m, linkedPatientsOf({ link: links }))) continue;
      // One Person per Patient: a job that got there first (on other blocking keys) keeps it.
      if (!(await this.links.claimAutomatic(tx, m, personId, scoreOf.get(m) ?? null))) continue;
      links.push({ target: { reference: `Patient/${m}` }, assurance: 'level3' });
      changed = true;
    }
    if (!current && links.length < 2) {
      // Everyone else was claimed by another Person meanwhile: no Person of one.
      await this.links.keepOnly(tx, personId, []);
      return;
    }
    if (!changed) return;
    const body: Person = { ...person, id: personId, link: links };
    await this.repository.write(ctx, versionWrite(ctx, current ? 'update' : 'create', current ? 'PUT' : 'POST', body, personId), tx);
    await this.persons.feedLinkedRecords(tx, personId, linkedPatientsOf(person), linkedPatientsOf(body));
  }

  private lockPerson(tx: EntityManager, personId: string): Promise<void> {
    return this.persons.lock(tx, personId);
  }

  /** A deleted Patient leaves its Person (the Person keeps its other links) and the linked records. */
  private async unlinkDeleted(ctx: AccessContext, tx: EntityManager, patientId: string): Promise<number> {
    const row = await this.links.linkOf(tx, patientId);
    if (!row) return 0;
    await this.lockPerson(tx, row.person_id);
    const current = await this.repository.readCurrent(ctx, 'Person', row.person_id, tx);
    if (current?.resource && !current.deleted) {
      const person = current.resource as Person;
      const before = person.link ?? [];
      const after = before.filter((l) => l.target?.reference !== `Patient/${patientId}`);
      if (after.length !== before.length) {
        const body: Person = { ...person, link: after.length ? after : undefined };
        await this.repository.write(ctx, versionWrite(ctx, 'update', 'PUT', body, row.person_id), tx);
        await this.persons.feedLinkedRecords(tx, row.person_id, linkedPatientsOf({ link: before }), linkedPatientsOf({ link: after }));
      }
    }
    await this.links.unlinkPatient(tx, patientId);
    return 1;
  }

  /** A review Task for HIE admins (once per pair, whichever side's job finds it first). */
  private async requestReview(ctx: AccessContext, tx: EntityManager, patientId: string, candidateId: string, s: MatchScore): Promise<boolean> {
    const [a, b] = [patientId, candidateId].sort();
    // Asked already, or decided: an admin's NO_MATCH is not asked again.
    if ((await this.links.reviewedPairs(tx, [[a, b]])).size || (await this.links.noMatchWithAny(tx, a, [b]))) return false;
    const id = randomUUID();
    const task = this.reviewTask(id, a, b, s);
    await this.repository.write(ctx, versionWrite(ctx, 'create', 'POST', task, id), tx);
    await this.links.recordReview(tx, a, b, id, s.weight);
    return true;
  }

  /** The review Task of the probable pair a < b, for HIE admins. */
  private reviewTask(id: string, a: string, b: string, s: MatchScore): Task {
    return {
      resourceType: 'Task',
      id,
      status: 'requested',
      intent: 'proposal',
      priority: 'routine',
      code: { coding: [REVIEW_TASK_CODE], text: 'Review a probable patient match' },
      focus: { reference: `Patient/${a}` },
      owner: { reference: `Organization/${this.config.exchangeOrganization}` },
      input: [
        { type: { text: 'candidate' }, valueReference: { reference: `Patient/${b}` } },
        { type: { text: 'score' }, valueDecimal: s.score },
        { type: { text: 'match-grade' }, valueCode: s.grade },
      ],
    };
  }
}
