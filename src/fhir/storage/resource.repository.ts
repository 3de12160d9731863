import { Injectable, Optional } from '@nestjs/common';
import type { Resource } from '@medplum/fhirtypes';
import type { EntityManager } from 'typeorm';
import { FhirError } from '../../common/fhir-error';
import type { AccessContext } from '../pipeline/access-context';
import { CUSTODIAN_POLICY } from '../pipeline/write-decision';
import type { StoredState, WriteChange, WriteDecision } from '../pipeline/write-decision';
import { patientCompartmentsOf, securityLabelsOf } from './patient-compartment';
import { SqlParams } from './sql-params';
import { queryByKey, READERS_PER_STATEMENT } from './prepared-statement';
import { CreateQueue, StorageSession } from './storage-session';

export interface StoredVersion {
  resourceType: string;
  id: string;
  versionId: number;
  lastUpdated: string;
  deleted: boolean;
  resource?: Resource;
  /** Patient ids of the version's Patient compartment (audit: whose data this is). */
  compartments: string[];
  /** What access was judged on (read and vread select them): explains a consent decision without another query. */
  custodianOrg?: string | null;
  /** Written-by: the organization that wrote this version. */
  authorOrg?: string | null;
  securityLabels?: string[];
  /** `clinical_period` as tstzrange text (null: none, the recorded instant counts; docs/consent.md). */
  clinicalPeriod?: string | null;
}

export interface HistoryEntry extends StoredVersion {
  seq: string;
  method: string;
}

export type WriteMode = 'create' | 'update' | 'delete';

export interface WriteRequest {
  mode: WriteMode;
  resourceType: string;
  id: string;
  /** Body to store (create/update); its meta.versionId and meta.lastUpdated are set here. */
  resource?: Resource;
  /** Expected current version (If-Match); mismatch gives 412. */
  ifMatch?: number;
  /** Written-by: the writer's organization (the custodian too when this write creates the resource). */
  authorOrg?: string;
  compartments?: string[];
  securityLabels?: string[];
  method: 'POST' | 'PUT' | 'PATCH' | 'DELETE';
}

export interface WriteResult {
  /** True when this write created the resource (a first version or a re-create after delete). */
  created: boolean;
  /** False when nothing changed (delete of something already gone). */
  changed: boolean;
  version?: StoredVersion;
  /** The write policy that permitted it, with its reason (the audit record carries it). */
  decision?: WriteDecision;
}

export interface HistoryQuery {
  resourceType?: string;
  id?: string;
  since?: string;
  /** [start, end) of the `_at` value's precision. */
  at?: { start: string; end: string };
  count: number;
  /** Keyset cursor: only entries with seq below this. */
  beforeSeq?: string;
}

const UNIQUE_VIOLATION = '23505';

/**
 * The write of a resource version, with what storage keeps beside it derived from the resource
 * itself (Patient compartments, security labels) and the writer (written-by organization; on a
 * create also the custodian).
 */
export function versionWrite(
  ctx: AccessContext,
  mode: 'create' | 'update',
  method: WriteRequest['method'],
  resource: Resource,
  id: string,
  ifMatch?: number,
): WriteRequest {
  return {
    mode,
    method,
    resourceType: resource.resourceType,
    id,
    resource,
    ifMatch,
    authorOrg: ctx.principal.organization,
    compartments: patientCompartmentsOf(resource),
    securityLabels: securityLabelsOf(resource),
  };
}

/**
 * The answer to a change of a resource the requester may not change: the same whether it does not
 * exist, exists but is hidden from the requester, or is visible but authored by another organization,
 * so a refused write discloses nothing (docs/security.md, write rule).
 */
export function notWritable(resourceType: string, id: string): FhirError {
  return FhirError.forbidden(`${resourceType}/${id} is not a resource this client may change`);
}

/**
 * The 403 of a refused write: the one answer (`notWritable`) when the default policy refused, a
 * registered policy's reason when it denied — it was asked only about a row the requester may read
 * (or a create), so its reason (ids and codes: a referral's state and the party's transitions)
 * discloses nothing the requester could not read.
 */
function refusedWrite(req: WriteRequest, decision: WriteDecision): FhirError {
  if (decision.policy === CUSTODIAN_POLICY) return notWritable(req.resourceType, req.id);
  return FhirError.forbidden(`${req.resourceType}/${req.id} may not be changed by this client: ${decision.reason}`);
}

/**
 * Writes the search index rows of one resource version inside the write's transaction
 * (implemented by the search module; `resource` undefined means deleted: remove its rows).
 */
export abstract class ResourceIndexer {
  /** `replacing`: an earlier version may have index rows to remove first. */
  abstract index(tx: EntityManager, resourceType: string, id: string, resource: Resource | undefined, replacing: boolean): Promise<void>;

  /**
   * Index rows of resources created together (first versions: nothing to replace). Must write
   * exactly what `index` writes for each; an indexer overrides it to batch the statements.
   */
  async indexCreated(tx: EntityManager, created: readonly Resource[]): Promise<void> {
    for (const resource of created) await this.index(tx, resource.resourceType, resource.id!, resource, false);
  }

  /** False for a type whose indexing must see every earlier write of the transaction: it is written alone. */
  indexesTogether(_resourceType: string): boolean {
    return true;
  }
}

/** A create queued by `deferCreates`, as `writeIn` would have stored it. */
interface PendingCreate {
  /** The writer's context: its write listeners run when the queue is written. */
  ctx: AccessContext;
  req: WriteRequest;
  content: Resource;
  lastUpdated: string;
}

/** The current row's columns as `toStored` reads them (`readCurrent`, `readCurrentForReaders`). */
const CURRENT_COLUMNS = `r.resource_type, r.id, r.version_id, r.last_updated, r.deleted, r.compartments, r.custodian_org, r.author_org, r.security_labels, r.content, r.clinical_period::text`;
const CURRENT_ROW = `SELECT ${CURRENT_COLUMNS}
         FROM resource r`;

/** Queued creates are written in chunks of this many: bounded statements, linear cost per entry. */
const CREATE_CHUNK = 500;

/**
 * The bulk-create queue of one storage session (see deferCreates): it lives on the session (the
 * unit of work) and ends with it; nothing is kept per transaction anywhere else.
 */
class QueuedCreates implements CreateQueue {
  /** Creates not yet written. */
  readonly pending: PendingCreate[] = [];
  /**
   * Chunks whose rows are written but whose index rows and write events wait for the queue to be
   * emptied: a listener must see every resource queued with its own (a Consent before its Patient).
   */
  readonly unindexed: PendingCreate[][] = [];
  /**
   * `Type/id` of client-assigned ids (PUT) that `reserveNewIds` found absent and locked in this
   * transaction: their first write is queued like a server-assigned create. Taken once each.
   */
  reserved = new Set<string>();

  constructor(private readonly flushWith: () => Promise<void>) {}

  flush(): Promise<void> {
    return this.flushWith();
  }

  /** Whether this PUT's id was reserved absent by `reserveNewIds` (once: a second write of it is an update). */
  takeReserved(req: WriteRequest): boolean {
    return this.reserved.delete(`${req.resourceType}/${req.id}`);
  }
}

/** The bulk-create queue of the session `tx` belongs to, if its creates are deferred. */
function queueOf(tx: EntityManager): QueuedCreates | undefined {
  const queue = StorageSession.of(tx)?.createQueue;
  return queue instanceof QueuedCreates ? queue : undefined;
}

/**
 * The only place that reads and writes the resource tables. Every method takes the caller's
 * AccessContext: reads AND its predicate into the SQL, so consent applies inside the query.
 */
@Injectable()
export class ResourceRepository {
  constructor(@Optional() private readonly indexer?: ResourceIndexer) {}

  /**
   * From now until `flushCreates`, plain creates in this transaction (new server-assigned ids) are
   * queued and written together: one statement for the resource and history rows and one for the
   * index rows of up to CREATE_CHUNK resources, instead of ~10 round trips each. Every other
   * read or write through this repository in the transaction writes the queue first, so it sees them.
   */
  deferCreates(session: StorageSession): void {
    session.createQueue ??= new QueuedCreates(() => this.flushCreates(session.tx));
  }

  /**
   * Update-as-create in bulk: of these client-assigned ids (a transaction's PUT entries), the ones
   * with no row at all (not even a deleted one) are locked with the advisory lock `writeIn` takes
   * for a first write, in one sorted order so two Bundles cannot deadlock on each other, and their
   * PUT is then queued like a create (one statement per chunk instead of ~10 per resource). A
   * concurrent first write of one of them waits for this transaction and then updates. Returns the
   * reserved ones of the `Type/id`s given; needs `deferCreates` first.
   */
  async reserveNewIds(session: StorageSession, targets: readonly string[]): Promise<ReadonlySet<string>> {
    const queue = queueOf(session.tx);
    if (!queue || !targets.length) return new Set();
    const tx = session.tx;
    const keys = [...new Set(targets)];
    await tx.query(
      `SELECT count(pg_advisory_xact_lock(h)) FROM (SELECT DISTINCT hashtextextended(k, 0) AS h FROM unnest($1::text[]) AS k ORDER BY 1) AS locks`,
      [keys],
    );
    // After the locks (a new statement, a new snapshot): a row committed meanwhile is seen here.
    const existing: { k: string }[] = await tx.query(
      `SELECT r.resource_type || '/' || r.id AS k
         FROM unnest($1::text[]) AS t(k) JOIN resource r ON r.resource_type = split_part(t.k, '/', 1) AND r.id = split_part(t.k, '/', 2)`,
      [keys],
    );
    const taken = new Set(existing.map((e) => e.k));
    const reserved = new Set(keys.filter((k) => !taken.has(k)));
    queue.reserved = reserved;
    return new Set(reserved);
  }

  /** Writes the queued creates of the transaction (a 409 names the `Type/id` if an id was taken). */
  async flushCreates(tx: EntityManager): Promise<void> {
    const queue = queueOf(tx);
    if (!queue) return;
    await this.writeQueuedRows(tx, queue);
    for (const chunk of queue.unindexed.splice(0, queue.unindexed.length)) {
      if (this.indexer) await this.indexer.indexCreated(tx, chunk.map((p) => p.content));
      // The same events as a single create, once every row of the queue is written (a Consent's
      // listener sees its Patient queued hundreds of entries later).
      for (const { ctx, req, content } of chunk) {
        const change = createdChange(req, content);
        await ctx.fireWrite('pre-commit', change, tx);
        await ctx.fireWrite('post-commit', change, tx);
      }
    }
  }

  /** The resource and history rows of the queued creates; their indexing waits for flushCreates. */
  private async writeQueuedRows(tx: EntityManager, queue: QueuedCreates): Promise<void> {
    if (!queue.pending.length) return;
    const batch = queue.pending.splice(0, queue.pending.length);
    await this.insertCreated(tx, batch);
    queue.unindexed.push(batch);
  }

  async readCurrent(ctx: AccessContext, resourceType: string, id: string, tx: EntityManager): Promise<StoredVersion | undefined> {
    await this.flushCreates(tx);
    const p = new SqlParams();
    const rows = await queryByKey<RawRow>(
      tx,
      `${CURRENT_ROW}
        WHERE r.resource_type = ${p.bind(resourceType)} AND r.id = ${p.bind(id)} AND ${ctx.renderRead('r', p)}`,
      p.values,
    );
    return rows[0] ? toStored(rows[0]) : undefined;
  }

  /**
   * The current resources of several readers at once, in one statement (a rest-hook delivery
   * batch: each notification's resource as its subscriber may read it now): one row per readable
   * (reader, id) pair, each pair judged by its own reader's predicate only (`CASE` on the reader's
   * number), the same judgement as `readCurrent`. Ids a reader may not read, or that do not exist,
   * are absent from its map. As `SearchService.readableVersions`, a named prepared statement with a
   * forced generic plan (found by primary key whatever the values; PostgreSQL would otherwise plan
   * every reader's consent predicate on each call): run it in a transaction.
   */
  async readCurrentForReaders(reads: readonly { ctx: AccessContext; resourceType: string; ids: readonly string[] }[], tx: EntityManager): Promise<Map<AccessContext, Map<string, StoredVersion>>> {
    if (reads.length > READERS_PER_STATEMENT) {
      // A statement per group of readers: each plan holds its readers' predicates only.
      const answer = new Map<AccessContext, Map<string, StoredVersion>>();
      for (let from = 0; from < reads.length; from += READERS_PER_STATEMENT) {
        for (const [ctx, found] of await this.readCurrentForReaders(reads.slice(from, from + READERS_PER_STATEMENT), tx)) answer.set(ctx, found);
      }
      return answer;
    }
    const answer = new Map<AccessContext, Map<string, StoredVersion>>(reads.map((r) => [r.ctx, new Map()]));
    const keys = reads.flatMap((r, c) => [...new Set(r.ids)].map((id) => ({ c, resourceType: r.resourceType, id })));
    if (!keys.length) return answer;
    await this.flushCreates(tx);
    const p = new SqlParams();
    const unnest = `unnest(${p.bind(keys.map((k) => k.resourceType))}::text[], ${p.bind(keys.map((k) => k.id))}::text[], ${p.bind(keys.map((k) => k.c))}::int[]) AS k(resource_type, id, c)`;
    const cases = reads.map((r, c) => `WHEN ${c} THEN (${r.ctx.renderRead('r', p)})`);
    // LATERAL ... LIMIT 1 keeps it a primary-key probe per key: as a plain join, the generic plan
    // (which cannot know the array's length) may hash the whole table instead.
    const text = `SELECT k.c, x.* FROM ${unnest}
        CROSS JOIN LATERAL (SELECT ${CURRENT_COLUMNS} FROM resource r
                             WHERE r.resource_type = k.resource_type AND r.id = k.id AND CASE k.c ${cases.join(' ')} END LIMIT 1) x`;
    await tx.query(`SET LOCAL plan_cache_mode = force_generic_plan`);
    const rows = await queryByKey<RawRow & { c: number }>(tx, text, p.values);
    await tx.query(`RESET plan_cache_mode`);
    for (const row of rows) answer.get(reads[row.c].ctx)!.set(row.id, toStored(row));
    return answer;
  }

  /** One version, judged on that version's own compartments, labels and authoring organization. */
  async readVersion(ctx: AccessContext, resourceType: string, id: string, versionId: number, tx: EntityManager): Promise<StoredVersion | undefined> {
    const p = new SqlParams();
    const rows = await queryByKey<RawRow>(
      tx,
      `SELECT h.resource_type, h.id, h.version_id, h.last_updated, h.deleted, h.compartments, h.custodian_org, h.author_org, h.security_labels, h.content, h.clinical_period::text
         FROM resource_history h
        WHERE h.resource_type = ${p.bind(resourceType)} AND h.id = ${p.bind(id)} AND h.version_id = ${p.bind(versionId)}
          AND ${ctx.renderRead('h', p, 'version')}`,
      p.values,
    );
    return rows[0] ? toStored(rows[0]) : undefined;
  }

  /**
   * One write in the interaction's transaction. The current row is locked, so concurrent writers to
   * one resource serialize and every version number is used exactly once. A resource that exists may
   * be changed only when the AccessContext lets the requester read it and the write rule holds.
   */
  async write(ctx: AccessContext, req: WriteRequest, tx: EntityManager): Promise<WriteResult> {
    const queue = queueOf(tx);
    if (
      queue &&
      req.ifMatch === undefined &&
      req.resource &&
      (this.indexer?.indexesTogether(req.resourceType) ?? true) &&
      (req.mode === 'create' || (req.mode === 'update' && req.method === 'PUT' && queue.takeReserved(req)))
    ) {
      // A first version: the default policy permits (the writer becomes the custodian); a module's may refuse.
      const decision = this.permitted(ctx, req, undefined, true, false);
      if (!decision.permit) throw Object.assign(notWritable(req.resourceType, req.id), { writeDecision: decision });
      return { ...(await this.queueCreate(ctx, tx, queue, req)), decision };
    }
    await this.flushCreates(tx);
    return this.writeIn(ctx, tx, req);
  }

  private async writeIn(ctx: AccessContext, tx: EntityManager, req: WriteRequest): Promise<WriteResult> {
    let cur = await this.lockCurrent(ctx, tx, req);
    if (!cur && req.mode === 'update') {
      // Two first writes of one id (update-as-create) serialize here instead of racing on the insert.
      await tx.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`${req.resourceType}/${req.id}`]);
      cur = await this.lockCurrent(ctx, tx, req);
    }
    // The one 403 (hidden, missing, not the requester's), before If-Match: the default policy's SQL
    // verdict, widened or narrowed by module policies for the type (on rows the requester may read).
    const defaultPermits = req.mode === 'create' || (cur ? cur.writable : req.mode !== 'delete');
    const decision = this.permitted(ctx, req, cur, defaultPermits, cur !== undefined);
    if (!decision.permit) throw Object.assign(refusedWrite(req, decision), { writeDecision: decision });
    if (req.ifMatch !== undefined && (!cur || cur.deleted || cur.version_id !== req.ifMatch)) {
      throw FhirError.preconditionFailed(
        `If-Match version ${req.ifMatch} does not match the current version of ${req.resourceType}/${req.id}`,
      );
    }
    if (req.mode === 'create' && cur) {
      // Only server-assigned ids are created, so this is a transaction's id collision (or a bug).
      throw new FhirError(409, 'duplicate', `${req.resourceType}/${req.id} already exists`);
    }
    if (req.mode === 'delete' && cur?.deleted) {
      return { created: false, changed: false };
    }
    const versionId = (cur?.version_id ?? 0) + 1;
    const lastUpdated = new Date().toISOString();
    let content: Resource | null = null;
    if (req.mode !== 'delete' && req.resource) {
      content = {
        ...req.resource,
        id: req.id,
        meta: { ...req.resource.meta, versionId: String(versionId), lastUpdated },
      } as Resource;
    }
    const deleted = req.mode === 'delete';
    const change: WriteChange = { mode: req.mode, resourceType: req.resourceType, id: req.id, before: beforeOf(cur), after: content ?? undefined };
    // A validate listener's FhirError refuses the write before anything is stored.
    await ctx.fireWrite('validate', change, tx);
    const json = content ? JSON.stringify(content) : null;
    // Set on create, then kept: only $transfer-custodian changes it (written-by is author_org).
    const custodian = cur ? cur.custodian_org : (req.authorOrg ?? null);
    // One round trip: the current row and the history row.
    await tx.query(
      `WITH h AS (
         INSERT INTO resource_history (resource_type, id, version_id, last_updated, deleted, method, author_org, custodian_org, compartments, security_labels, content)
         VALUES ($1, $2, $3, $4, $5, $10, $6, $13,
                 CASE WHEN $5 THEN $11::text[] ELSE $7::text[] END, CASE WHEN $5 THEN $12::text[] ELSE $8::text[] END, $9)
       )
       INSERT INTO resource (resource_type, id, version_id, last_updated, deleted, author_org, custodian_org, compartments, security_labels, content)
       VALUES ($1, $2, $3, $4, $5, $6, $13, $7, $8, $9)
       ON CONFLICT (resource_type, id) DO UPDATE SET
         version_id = EXCLUDED.version_id, last_updated = EXCLUDED.last_updated, deleted = EXCLUDED.deleted,
         author_org = COALESCE(EXCLUDED.author_org, resource.author_org),
         compartments = CASE WHEN EXCLUDED.deleted THEN resource.compartments ELSE EXCLUDED.compartments END,
         security_labels = CASE WHEN EXCLUDED.deleted THEN resource.security_labels ELSE EXCLUDED.security_labels END,
         content = EXCLUDED.content`,
      [
        req.resourceType,
        req.id,
        versionId,
        lastUpdated,
        deleted,
        req.authorOrg ?? null,
        req.compartments ?? [],
        req.securityLabels ?? [],
        json,
        req.method,
        // A deletion version keeps the attributes of the version it deletes: who may see the tombstone.
        cur?.compartments ?? [],
        cur?.security_labels ?? [],
        custodian,
      ],
    );
    if (this.indexer) await this.indexer.index(tx, req.resourceType, req.id, content ?? undefined, cur !== undefined);
    await ctx.fireWrite('pre-commit', change, tx);
    await ctx.fireWrite('post-commit', change, tx);
    return {
      created: !cur || cur.deleted,
      changed: true,
      decision,
      version: {
        resourceType: req.resourceType,
        id: req.id,
        versionId,
        lastUpdated,
        deleted,
        resource: content ?? undefined,
        compartments: deleted ? (cur?.compartments ?? []) : (req.compartments ?? []),
        custodianOrg: custodian,
        authorOrg: req.authorOrg ?? null,
      },
    };
  }

  /**
   * The write policies' decision (write-policy.ts). Module policies see the stored version only
   * when the requester may read it; a hidden row is judged by the default policy alone.
   */
  private permitted(ctx: AccessContext, req: WriteRequest, cur: CurrentRow | undefined, defaultPermits: boolean, existed: boolean): WriteDecision {
    if (cur && cur.readable === false) return ctx.decideWrite({ mode: req.mode, resourceType: req.resourceType, id: req.id }, false, true);
    return ctx.decideWrite({ mode: req.mode, resourceType: req.resourceType, id: req.id, before: beforeOf(cur), after: req.resource }, defaultPermits, existed);
  }

  /**
   * Changes the custodian organization of a resource (the admin operation $transfer-custodian):
   * the current row and every version row (each carries the resource's custodian so a version is
   * judged without a join). No new version: the content is not changed. System contexts only (the
   * operation mints one, audited); answers the previous custodian, or undefined if there is no
   * such resource (a deleted one is transferred too: its history stays someone's).
   */
  async transferCustodian(ctx: AccessContext, resourceType: string, id: string, custodian: string, tx: EntityManager): Promise<{ previous: string | null; versionId: number; compartments: string[] } | undefined> {
    if (!ctx.system) throw new Error('transferCustodian changes rows of any organization: system contexts only');
    await this.flushCreates(tx);
    const rows: { custodian_org: string | null; version_id: number; compartments: string[] }[] = await tx.query(
      `SELECT custodian_org, version_id, compartments FROM resource WHERE resource_type = $1 AND id = $2 FOR UPDATE`,
      [resourceType, id],
    );
    if (!rows[0]) return undefined;
    await tx.query(
      `WITH h AS (UPDATE resource_history SET custodian_org = $3 WHERE resource_type = $1 AND id = $2)
       UPDATE resource SET custodian_org = $3 WHERE resource_type = $1 AND id = $2`,
      [resourceType, id, custodian],
    );
    return { previous: rows[0].custodian_org, versionId: rows[0].version_id, compartments: rows[0].compartments ?? [] };
  }

  /**
   * The current row, locked, with whether the requester may change it. Rows it may not read are
   * locked too (their writers must still serialize) but are never described to it.
   */
  private async lockCurrent(ctx: AccessContext, tx: EntityManager, req: WriteRequest): Promise<CurrentRow | undefined> {
    const p = new SqlParams();
    // Module write policies and listeners that ask for it see the stored version's content (before),
    // only where readable (a permitted write's row always is).
    const judges = ctx.judgesWrites(req.resourceType);
    const forPolicies =
      (judges ? `, ${ctx.renderRead('r', p)} AS readable` : '') +
      (judges || ctx.wantsBeforeContent(req.resourceType) ? `, CASE WHEN ${ctx.renderRead('r', p)} THEN r.content END AS content` : '');
    const rows = await queryByKey<CurrentRow>(
      tx,
      `SELECT r.version_id, r.deleted, r.compartments, r.security_labels, r.custodian_org, r.author_org, ${ctx.renderWrite('r', p)} AS writable${forPolicies}
         FROM resource r WHERE r.resource_type = ${p.bind(req.resourceType)} AND r.id = ${p.bind(req.id)} FOR UPDATE`,
      p.values,
    );
    return rows[0];
  }

  /** What `writeIn` answers for a first version; the rows are written by `insertCreated`. */
  private async queueCreate(ctx: AccessContext, tx: EntityManager, queue: QueuedCreates, req: WriteRequest): Promise<WriteResult> {
    const lastUpdated = new Date().toISOString();
    const content = {
      ...req.resource,
      id: req.id,
      meta: { ...req.resource!.meta, versionId: '1', lastUpdated },
    } as Resource;
    await ctx.fireWrite('validate', createdChange(req, content), tx);
    queue.pending.push({ ctx, req, content, lastUpdated });
    if (queue.pending.length >= CREATE_CHUNK) await this.writeQueuedRows(tx, queue);
    return {
      created: true,
      changed: true,
      version: { resourceType: req.resourceType, id: req.id, versionId: 1, lastUpdated, deleted: false, resource: content, compartments: req.compartments ?? [] },
    };
  }

  /**
   * First versions of many resources: resource and history rows in one statement (the rows travel
   * as one JSON array); flushCreates writes their index rows. No row may exist for these ids; a collision fails
   * with 409 rather than overwrite, and the caller's transaction rolls back.
   */
  private async insertCreated(tx: EntityManager, batch: PendingCreate[]): Promise<void> {
    const rows = batch.map(({ req, content, lastUpdated }) => [
      req.resourceType,
      req.id,
      lastUpdated,
      req.method,
      req.authorOrg ?? null,
      req.compartments ?? [],
      req.securityLabels ?? [],
      content,
    ]);
    try {
      await tx.query(
        `WITH input AS MATERIALIZED (
           SELECT e->>0 AS resource_type, e->>1 AS id, (e->>2)::timestamptz AS last_updated, e->>3 AS method, e->>4 AS author_org,
                  ARRAY(SELECT jsonb_array_elements_text(e->5)) AS compartments,
                  ARRAY(SELECT jsonb_array_elements_text(e->6)) AS security_labels,
                  e->7 AS content, n
             FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS x(e, n)
         ),
         h AS (
           INSERT INTO resource_history (resource_type, id, version_id, last_updated, deleted, method, author_org, custodian_org, compartments, security_labels, content)
           SELECT resource_type, id, 1, last_updated, false, method, author_org, author_org, compartments, security_labels, content FROM input ORDER BY n
         )
         INSERT INTO resource (resource_type, id, version_id, last_updated, deleted, author_org, custodian_org, compartments, security_labels, content)
         SELECT resource_type, id, 1, last_updated, false, author_org, author_org, compartments, security_labels, content FROM input`,
        [JSON.stringify(rows)],
      );
    } catch (err) {
      const e = err as { code?: string; detail?: string };
      if (e.code === UNIQUE_VIOLATION) {
        const taken = /=\(([^,]+), ([^,)]+)/.exec(e.detail ?? '');
        throw new FhirError(409, 'duplicate', `${taken ? `${taken[1]}/${taken[2]}` : 'A resource id'} already exists`);
      }
      throw err;
    }
  }

  /** Newest first, keyset-paged by the history sequence; one extra row tells whether a next page exists. */
  async history(ctx: AccessContext, q: HistoryQuery, tx: EntityManager): Promise<HistoryEntry[]> {
    const where: string[] = [];
    const p = new SqlParams();
    const bind = (v: unknown): string => p.bind(v);
    if (q.resourceType) where.push(`h.resource_type = ${bind(q.resourceType)}`);
    if (q.id) where.push(`h.id = ${bind(q.id)}`);
    if (q.since) where.push(`h.last_updated >= ${bind(q.since)}`);
    if (q.beforeSeq) where.push(`h.seq < ${bind(q.beforeSeq)}`);
    if (q.at) {
      // Versions current at some instant of [start, end): written before the end and not replaced before the start.
      const end = bind(q.at.end);
      const start = bind(q.at.start);
      where.push(`h.last_updated < ${end}`);
      where.push(`NOT EXISTS (SELECT 1 FROM resource_history n
                   WHERE n.resource_type = h.resource_type AND n.id = h.id
                     AND n.version_id > h.version_id AND n.last_updated <= ${start})`);
    }
    // Each version is judged on its own attributes: a version the requester may not see is left out.
    where.push(ctx.renderRead('h', p, 'version'));
    const rows: (RawRow & { seq: string; method: string })[] = await tx.query(
      `SELECT h.seq, h.method, h.resource_type, h.id, h.version_id, h.last_updated, h.deleted, h.compartments, h.content
         FROM resource_history h
        WHERE ${where.join(' AND ')}
        ORDER BY h.seq DESC
        LIMIT ${bind(q.count + 1)}`,
      p.values,
    );
    return rows.map((row) => ({ ...toStored(row), seq: String(row.seq), method: row.method }));
  }

  /**
   * The Patient compartments of a resource whatever its visibility, for the audit record of a refused
   * or failed access by id (auditors must see whose data was asked for). System contexts only.
   */
  async compartmentsOf(ctx: AccessContext, resourceType: string, id: string, tx: EntityManager): Promise<string[]> {
    if (!ctx.system) throw new Error('compartmentsOf reads across organizations: system contexts only');
    const rows: { compartments: string[] }[] = await tx.query(
      `SELECT compartments FROM resource WHERE resource_type = $1 AND id = $2`,
      [resourceType, id],
    );
    return rows[0]?.compartments ?? [];
  }

  /** Versions of one resource the requester may see (the `total` of its history). */
  async countVersions(ctx: AccessContext, resourceType: string, id: string, tx: EntityManager): Promise<number> {
    const p = new SqlParams();
    const rows: { n: string }[] = await tx.query(
      `SELECT count(*) AS n FROM resource_history h
        WHERE h.resource_type = ${p.bind(resourceType)} AND h.id = ${p.bind(id)} AND ${ctx.renderRead('h', p, 'version')}`,
      p.values,
    );
    return Number(rows[0].n);
  }
}

interface CurrentRow {
  version_id: number;
  deleted: boolean;
  compartments: string[];
  security_labels: string[];
  custodian_org: string | null;
  author_org: string | null;
  writable: boolean;
  /** Selected only when module write policies judge the type (content also when a listener asks). */
  readable?: boolean;
  content?: Resource | null;
}

interface RawRow {
  resource_type: string;
  id: string;
  version_id: number;
  last_updated: Date;
  deleted: boolean;
  compartments: string[] | null;
  custodian_org?: string | null;
  author_org?: string | null;
  security_labels?: string[] | null;
  content: Resource | null;
  clinical_period?: string | null;
}

/** The stored version as write policies and listeners see it (content only when they asked for it). */
function beforeOf(cur: CurrentRow | undefined): StoredState | undefined {
  if (!cur) return undefined;
  return { versionId: cur.version_id, deleted: cur.deleted, resource: cur.content ?? undefined, custodianOrg: cur.custodian_org, authorOrg: cur.author_org };
}

/** A first version's change, as its listeners see it (the same for a single and a queued create). */
function createdChange(req: WriteRequest, content: Resource): WriteChange {
  return { mode: req.mode, resourceType: req.resourceType, id: req.id, after: content };
}

function toStored(row: RawRow): StoredVersion {
  return {
    resourceType: row.resource_type,
    id: row.id,
    versionId: row.version_id,
    lastUpdated: new Date(row.last_updated).toISOString(),
    deleted: row.deleted,
    resource: row.content ?? undefined,
    compartments: row.compartments ?? [],
    ...(row.author_org !== undefined ? { custodianOrg: row.custodian_org ?? null, authorOrg: row.author_org, securityLabels: row.security_labels ?? [] } : {}),
    ...(row.clinical_period !== undefined ? { clinicalPeriod: row.clinical_period } : {}),
  };
}
