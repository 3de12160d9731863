import { randomUUID } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import type { Bundle, BundleEntry, BundleEntryResponse, OperationOutcome, Resource } from '@medplum/fhirtypes';
import type { EntityManager } from 'typeorm';
import { APP_CONFIG, AppConfig } from '../config/app.config';
import { databaseFailure } from '../common/database-error';
import { FhirError } from '../common/fhir-error';
import { parseJsonKeepingDecimals } from '../common/fhir-json';
import { FhirDefinitions } from '../fhir/definitions/fhir-definitions';
import type { AccessContext } from '../fhir/pipeline/access-context';
import { referencePath } from '../fhir/pipeline/conditional-references';
import { buildInteraction, Interaction, InteractionKind, InteractionResult, QueryParams } from '../fhir/pipeline/interaction';
import { parseQueryString } from '../fhir/pipeline/query-params';
import { checkTarget, InteractionTarget, parseReadPath } from '../fhir/pipeline/interaction.parser';
import { MAX_BUNDLE_ENTRIES } from '../fhir/search/search-limits';
import { ResourceRepository, versionWrite } from '../fhir/storage/resource.repository';
import { lockConditionalCreates, ResourceMatcher } from '../fhir/storage/resource-matcher';
import type { StorageSession } from '../fhir/storage/storage-session';

/**
 * What the pipeline lends the processor: the storage session of a transaction Bundle, running one
 * entry (authorize, consent, execute, audit) inside it or in a session of its own, and a context
 * for the Bundle's look-ups (conditional references, ifNoneExist), authorized as searches.
 */
export interface EntryRunner {
  transaction<T>(work: (session: StorageSession) => Promise<T>): Promise<T>;
  runInTransaction(entry: Interaction, index: number, session: StorageSession): Promise<InteractionResult>;
  runAlone(entry: Interaction, index: number): Promise<InteractionResult>;
  lookup(kind: 'search-type', resourceType: string, query: QueryParams): Promise<AccessContext>;
}

type Method = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** Processing order of a transaction (http.html#trules): deletes, creates, updates, reads. */
const ORDER: Record<Method, number> = { DELETE: 0, POST: 1, PUT: 2, PATCH: 2, GET: 3, HEAD: 3 };
/** Batch entries in flight per request: enough to overlap round trips, few enough to leave the pool to others. */
const BATCH_CONCURRENCY = 4;
const STATUS_TEXT: Record<number, string> = {
  200: '200 OK',
  201: '201 Created',
  204: '204 No Content',
  304: '304 Not Modified',
};

interface PlannedEntry {
  index: number;
  method: Method;
  interaction: Interaction;
  fullUrl?: string;
}

/** A batch entry refused while planning: it gets its own failure response, the others still run. */
interface RefusedEntry {
  index: number;
  failure: unknown;
}

/**
 * batch and transaction Bundles (http.html#transaction). A transaction runs every entry through
 * the pipeline inside ONE database transaction: any failure rolls everything back and the answer
 * names the failing entry. A batch runs entries independently, each with its own outcome.
 */
@Injectable()
export class BundleProcessor {
  constructor(
    private readonly repository: ResourceRepository,
    private readonly matcher: ResourceMatcher,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async process(bundleInteraction: Interaction, runner: EntryRunner): Promise<InteractionResult> {
    const bundle = bundleInteraction.body as Bundle;
    const entries = bundle.entry ?? [];
    if (!Array.isArray(entries)) throw FhirError.badRequest('Bundle.entry must be an array', ['Bundle.entry'], 'structure');
    if (entries.length > MAX_BUNDLE_ENTRIES) {
      throw FhirError.badRequest(`The Bundle has ${entries.length} entries: at most ${MAX_BUNDLE_ENTRIES} per batch or transaction`, ['Bundle.entry'], 'too-costly');
    }
    if (bundleInteraction.kind === 'transaction') {
      return this.transaction(
        entries.map((entry, index) => this.plan(entry, index, bundleInteraction)),
        runner,
      );
    }
    // A batch entry that cannot be planned fails alone (http.html#brules).
    const planned = entries.map((entry, index): PlannedEntry | RefusedEntry => {
      try {
        return this.plan(entry, index, bundleInteraction);
      } catch (failure) {
        return { index, failure };
      }
    });
    return this.batch(planned, runner);
  }

  private async transaction(planned: PlannedEntry[], runner: EntryRunner): Promise<InteractionResult> {
    this.rejectDuplicates(planned);
    const responses: BundleEntry[] = new Array(planned.length);
    // References are rewritten in the body as sent, and put back when the transaction fails: a rerun
    // on a write conflict plans afresh from the body as sent, with no copy of it made for every run.
    const rewritten: RewrittenReference[] = [];
    try {
      await this.runTransaction(planned, runner, responses, rewritten);
    } catch (err) {
      for (let k = rewritten.length - 1; k >= 0; k--) rewritten[k].holder.reference = rewritten[k].reference;
      throw err;
    }
    return { status: 200, resource: { resourceType: 'Bundle', type: 'transaction-response', entry: responses } };
  }

  private async runTransaction(planned: PlannedEntry[], runner: EntryRunner, responses: BundleEntry[], rewritten: RewrittenReference[]): Promise<void> {
    await runner.transaction(async (session) => {
      const tx = session.tx;
      const references = await this.assignIdentities(planned, runner, tx);
      const hadConditional = await this.resolveConditionalReferences(planned, references, runner, tx);
      for (const { interaction: i } of planned) {
        const conditionalLeft = rewriteReferences(i.body, references, rewritten);
        // The Bundle's conditional references are resolved above and rewritten here (the rewrite's
        // walk sees that none is left): the executor need not search the entry for them again.
        if ((!hadConditional || !conditionalLeft) && (i.kind === 'create' || i.kind === 'update')) i.noConditionalReferences = true;
      }
      const ordered = [...planned].sort((a, b) => ORDER[a.method] - ORDER[b.method] || a.index - b.index);
      // Plain creates (new ids, server-assigned or PUT to an id nobody has) are written together;
      // anything else first writes what is queued.
      this.repository.deferCreates(session);
      const newIds = await this.repository.reserveNewIds(session, planned.filter(isPutById).map(putTarget));
      for (const p of ordered) {
        try {
          if (!isPlainCreate(p) && !(isPutById(p) && newIds.has(putTarget(p)))) await this.repository.flushCreates(tx);
          responses[p.index] = this.entryResponse(await runner.runInTransaction(p.interaction, p.index, session), p);
        } catch (err) {
          throw atEntry(err, entryNamedBy(err, planned) ?? p.index);
        }
      }
      try {
        await this.repository.flushCreates(tx);
      } catch (err) {
        throw atEntry(err, entryNamedBy(err, planned) ?? ordered[ordered.length - 1].index);
      }
    });
  }

  /**
   * Batch entries are independent (http.html#brules: no interdependencies, any processing order),
   * so a few run at a time, each in its own transaction: their round trips and commits overlap.
   */
  private async batch(planned: (PlannedEntry | RefusedEntry)[], runner: EntryRunner): Promise<InteractionResult> {
    const responses: BundleEntry[] = new Array(planned.length);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < planned.length) {
        const p = planned[next++];
        if ('failure' in p) {
          responses[p.index] = { response: failureResponse(p.failure) };
          continue;
        }
        try {
          if (p.interaction.body && containsUrnReference(p.interaction.body)) {
            throw FhirError.badRequest('Entries of a batch are independent: urn: references are only resolved in a transaction');
          }
          responses[p.index] = this.entryResponse(await runner.runAlone(p.interaction, p.index), p);
        } catch (err) {
          responses[p.index] = { response: failureResponse(err) };
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(BATCH_CONCURRENCY, planned.length) }, worker));
    return { status: 200, resource: { resourceType: 'Bundle', type: 'batch-response', entry: responses } };
  }

  /** Entry -> Interaction, checking request.method and request.url. */
  private plan(entry: BundleEntry, index: number, parent: Interaction): PlannedEntry {
    const where = `Bundle.entry[${index}]`;
    if (!entry || typeof entry !== 'object' || Array.isArray(entry)) throw atEntry(FhirError.badRequest('An entry must be an object', [where], 'structure'), index);
    const method = entry.request?.method as Method | undefined;
    const url = entry.request?.url;
    if (!method || !(method in ORDER)) throw atEntry(FhirError.badRequest('request.method is missing or not supported', [`${where}.request.method`]), index);
    if (typeof url !== 'string' || !url) throw atEntry(FhirError.badRequest('request.url is missing', [`${where}.request.url`]), index);
    const [path, query = ''] = url.replace(/^\//, '').split('?', 2);
    const segments = path.split('/');
    // Reads take every URL the REST API reads (compartments, history); writes name a type and perhaps an id.
    let target: InteractionTarget;
    let readKind: InteractionKind | undefined;
    try {
      if (method === 'GET' || method === 'HEAD') {
        ({ kind: readKind, target } = parseReadPath(path));
      } else {
        if (segments.length > 2) throw FhirError.badRequest(`'${path.slice(0, 100)}' is not a URL for ${method}: use Type or Type/id`);
        target = { resourceType: segments[0], id: segments[1] };
        checkTarget(target);
      }
    } catch (err) {
      throw atEntry(inRequestUrl(err, `${where}.request.url`), index);
    }
    const resourceType = segments[0];
    const id = target.id;
    let kind: InteractionKind;
    let body: unknown = entry.resource;
    switch (method) {
      case 'POST':
        kind = 'create';
        break;
      case 'PUT':
        kind = 'update';
        break;
      case 'PATCH':
        kind = 'patch';
        body = patchBody(entry.resource, where, index);
        break;
      case 'DELETE':
        kind = 'delete';
        break;
      default:
        if (!readKind) throw atEntry(FhirError.badRequest('request.url is not a read', [`${where}.request.url`]), index);
        kind = readKind;
    }
    if ((method === 'PUT' || method === 'POST') && !entry.resource) {
      throw atEntry(FhirError.badRequest(`${method} needs a resource`, [`${where}.resource`]), index);
    }
    if ((method === 'PUT' || method === 'PATCH' || method === 'DELETE') && !id && !query) {
      throw atEntry(FhirError.badRequest(`${method} needs an id or search criteria in request.url`, [`${where}.request.url`]), index);
    }
    const interaction = buildInteraction(kind, {
      resourceType: target.resourceType ?? resourceType,
      id: method === 'POST' ? undefined : id,
      versionId: target.versionId,
      ...(target.compartment ? { compartment: target.compartment } : {}),
      body,
      query: parseQueryString(query),
      conditional: (method === 'PUT' || method === 'DELETE') && !id ? query : undefined,
      ifMatch: entry.request?.ifMatch,
      ifNoneExist: method === 'POST' ? entry.request?.ifNoneExist : undefined,
      ifNoneMatch: entry.request?.ifNoneMatch,
      ifModifiedSince: entry.request?.ifModifiedSince,
      preferReturn: parent.preferReturn,
      path: `/${path}`,
    });
    return { index, method, interaction, fullUrl: entry.fullUrl };
  }

  /** Duplicate fullUrls, or two writes to one resource, make a transaction ambiguous: reject it. */
  private rejectDuplicates(planned: PlannedEntry[]): void {
    const fullUrls = new Map<string, number>();
    const targets = new Map<string, number>();
    for (const p of planned) {
      if (p.fullUrl) {
        if (fullUrls.has(p.fullUrl)) {
          throw atEntry(FhirError.badRequest(`Duplicate fullUrl '${p.fullUrl.slice(0, 100)}' (also entry ${fullUrls.get(p.fullUrl)})`, [`Bundle.entry[${p.index}].fullUrl`], 'duplicate'), p.index);
        }
        fullUrls.set(p.fullUrl, p.index);
      }
      if (p.method !== 'GET' && p.method !== 'HEAD' && p.method !== 'POST' && p.interaction.id) {
        const key = `${p.interaction.resourceType}/${p.interaction.id}`;
        if (targets.has(key)) {
          throw atEntry(FhirError.badRequest(`Entries ${targets.get(key)} and ${p.index} both write ${key}`, [`Bundle.entry[${p.index}].request.url`], 'duplicate'), p.index);
        }
        targets.set(key, p.index);
      }
    }
  }

  /**
   * Every fullUrl gets its final identity before anything is written: creates get a new id (or,
   * with ifNoneExist, the existing match), updates keep theirs. Returns fullUrl -> `Type/id`.
   */
  private async assignIdentities(planned: PlannedEntry[], runner: EntryRunner, tx: EntityManager): Promise<Map<string, string>> {
    const references = new Map<string, string>();
    const deleted = await this.deletedByTransaction(planned, runner, tx);
    const assign = (p: PlannedEntry, ids: string[]): void => {
      if (ids.length > 1) throw atEntry(new FhirError(412, 'multiple-matches', `ifNoneExist criteria match ${ids.length} resources`), p.index);
      const i = p.interaction;
      if (i.kind !== 'create') return;
      i.assignedId = ids[0] ?? randomUUID();
      if (p.fullUrl) references.set(p.fullUrl, `${i.resourceType}/${i.assignedId}`);
    };
    // Conditional creates that matched nothing yet, matched again once their types' turns are held.
    const waiting: { p: PlannedEntry; type: string; match: () => Promise<string[]> }[] = [];
    for (const p of planned) {
      const i = p.interaction;
      if (i.kind === 'create' && i.ifNoneExist) {
        const ctx = await runner.lookup('search-type', i.resourceType, parseQueryString(i.ifNoneExist));
        // Deletes run before creates (http.html#trules): what this Bundle deletes matches nothing.
        const match = async (): Promise<string[]> =>
          (await this.matcher.matchIds(ctx, i.resourceType, i.ifNoneExist!, tx)).filter((m) => !deleted.has(`${i.resourceType}/${m}`));
        const ids = await match();
        if (ids.length) assign(p, ids);
        else waiting.push({ p, type: i.resourceType, match });
      } else if (i.kind === 'create') {
        assign(p, []);
      } else if (i.kind === 'update' && i.id && p.fullUrl) {
        references.set(p.fullUrl, `${i.resourceType}/${i.id}`);
      }
    }
    // About to create: wait for the types' other conditional creates, held until commit
    // (resource-matcher.ts). All of this Bundle's types, in one order for every Bundle, so two
    // Bundles naming the same types in opposite entry order wait for each other instead of
    // deadlocking (each deadlock was a rolled-back run, and under load a 503 after the retries).
    for (const type of [...new Set(waiting.map((w) => w.type))].sort()) await lockConditionalCreates(tx, type);
    for (const w of waiting) assign(w.p, await w.match());
    return references;
  }

  /**
   * `Type/id` of every resource this Bundle's DELETE entries will delete (by id, or the matches of
   * conditional criteria as the delete will find them: deletes run first, so nothing else changes them).
   */
  private async deletedByTransaction(planned: PlannedEntry[], runner: EntryRunner, tx: EntityManager): Promise<Set<string>> {
    const deleted = new Set<string>();
    if (!planned.some((p) => p.interaction.kind === 'create' && p.interaction.ifNoneExist)) return deleted;
    for (const p of planned) {
      const i = p.interaction;
      if (i.kind !== 'delete') continue;
      if (i.conditional === undefined) {
        deleted.add(`${i.resourceType}/${i.id}`);
        continue;
      }
      // Criteria the client may not search, or bad ones, fail at the delete entry itself.
      const ids = await runner
        .lookup('search-type', i.resourceType, parseQueryString(i.conditional))
        .then((ctx) => this.matcher.matchIds(ctx, i.resourceType, i.conditional!, tx))
        .catch((err: unknown) => {
          if (err instanceof FhirError) return [] as string[];
          throw err;
        });
      for (const id of ids) deleted.add(`${i.resourceType}/${id}`);
    }
    return deleted;
  }

  /**
   * `Patient?identifier=sys|val` references must resolve to exactly one resource the client may
   * see, counting both this Bundle's resources and stored ones (0 or several: 412 naming the
   * entry). Both are matched by the same SQL search: the Bundle's candidates of the referenced
   * types are written under a savepoint (indexed by the same extractor as any write), searched,
   * and rolled back before the entries run. Answers whether any entry held a conditional reference.
   */
  private async resolveConditionalReferences(
    planned: PlannedEntry[],
    references: Map<string, string>,
    runner: EntryRunner,
    tx: EntityManager,
  ): Promise<boolean> {
    const wanted: { p: PlannedEntry; reference: string; type: string; criteria: string }[] = [];
    const seen = new Set<string>();
    let any = false;
    for (const p of planned) {
      for (const reference of collectReferences(p.interaction.body)) {
        if (!CONDITIONAL_REFERENCE_RE.test(reference)) continue;
        any = true;
        // Each distinct reference string is resolved once per Bundle.
        if (references.has(reference) || seen.has(reference)) continue;
        seen.add(reference);
        const [type, criteria] = reference.split('?', 2);
        if (!FhirDefinitions.get().isStorable(type)) {
          throw atEntry(FhirError.badRequest(`Conditional reference to unknown type '${type}'`, [`Bundle.entry[${p.index}].resource`]), p.index);
        }
        wanted.push({ p, reference, type, criteria });
      }
    }
    if (!wanted.length) return any;
    const types = new Set(wanted.map((w) => w.type));
    const candidates = planned.filter(
      (p) => p.interaction.body && (p.method === 'POST' || p.method === 'PUT') && types.has(p.interaction.resourceType ?? ''),
    );
    if (candidates.length) await tx.query('SAVEPOINT bundle_candidates');
    try {
      for (const c of candidates) await this.writeCandidate(c, runner, tx);
      for (const { p, reference, type, criteria } of wanted) {
        const ctx = await runner.lookup('search-type', type, parseQueryString(criteria));
        const targets = (await this.matcher.matchIds(ctx, type, criteria, tx)).map((id) => `${type}/${id}`);
        if (targets.length !== 1) {
          throw atEntry(
            new FhirError(412, targets.length ? 'multiple-matches' : 'not-found', `Conditional reference '${reference.slice(0, 200)}' matches ${targets.length} resources; it must match exactly one`, [
              referencePath(p.interaction.body, reference) ?? `Bundle.entry[${p.index}].resource`,
            ]),
            p.index,
          );
        }
        references.set(reference, targets[0]);
      }
    } finally {
      if (candidates.length) await tx.query('ROLLBACK TO SAVEPOINT bundle_candidates');
    }
    return true;
  }

  /** A Bundle resource as a search candidate: stored (under the caller's savepoint) with its index rows. */
  private async writeCandidate(p: PlannedEntry, runner: EntryRunner, tx: EntityManager): Promise<void> {
    const i = p.interaction;
    if (i.kind !== 'create' && i.kind !== 'update') return;
    const id = i.kind === 'create' ? i.assignedId : i.id;
    if (!id) return;
    const resource = { ...(i.body as Resource), id } as Resource;
    const ctx = await runner.lookup('search-type', i.resourceType, {});
    try {
      await this.repository.write(ctx, versionWrite(ctx, i.kind, i.kind === 'create' ? 'POST' : 'PUT', resource, id), tx);
    } catch (err) {
      throw atEntry(err, p.index);
    }
  }

  private entryResponse(result: InteractionResult, p: PlannedEntry): BundleEntry {
    const response: BundleEntryResponse = { status: STATUS_TEXT[result.status] ?? String(result.status) };
    if (result.location) response.location = result.location;
    if (result.versionId) response.etag = `W/"${result.versionId}"`;
    if (result.lastUpdated) response.lastModified = result.lastUpdated;
    const isRead = p.method === 'GET' || p.method === 'HEAD';
    const withResource = isRead || p.interaction.preferReturn === 'representation';
    const resource = result.resource;
    return {
      ...(resource?.id && resource.resourceType !== 'OperationOutcome'
        ? { fullUrl: `${this.config.fhirBaseUrl}/${resource.resourceType}/${resource.id}` }
        : {}),
      ...(withResource && resource ? { resource } : {}),
      response,
    };
  }
}

const CONDITIONAL_REFERENCE_RE = /^[A-Z][A-Za-z]+\?/;

function isPlainCreate(p: PlannedEntry): boolean {
  return p.interaction.kind === 'create' && !p.interaction.ifNoneExist;
}

/** PUT to a given id with no precondition: a create when nobody has that id yet. */
function isPutById(p: PlannedEntry): boolean {
  const i = p.interaction;
  return i.kind === 'update' && !!i.id && !i.ifMatch;
}

/** `Type/id` of a PUT entry, as reserveNewIds keys it. */
function putTarget(p: PlannedEntry): string {
  return `${p.interaction.resourceType}/${p.interaction.id}`;
}

/** A write that collided on `Type/id` names that resource: find the entry that created it. */
function entryNamedBy(err: unknown, planned: PlannedEntry[]): number | undefined {
  if (!(err instanceof FhirError) || err.status !== 409) return undefined;
  const m = /([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64}) already exists/.exec(err.issues[0]?.diagnostics ?? '');
  return m ? planned.find((p) => p.interaction.kind === 'create' && p.interaction.resourceType === m[1] && p.interaction.assignedId === m[2])?.index : undefined;
}


/** PATCH entries carry a Parameters (FHIRPath Patch) or a Binary holding a JSON Patch. */
function patchBody(resource: Resource | undefined, where: string, index: number): unknown {
  if (resource?.resourceType === 'Parameters') return resource;
  if (resource?.resourceType === 'Binary' && resource.data) {
    try {
      return parseJsonKeepingDecimals(Buffer.from(resource.data, 'base64').toString('utf8'));
    } catch {
      throw atEntry(FhirError.badRequest('The Binary of a PATCH entry does not hold a JSON Patch document', [`${where}.resource.data`]), index);
    }
  }
  throw atEntry(FhirError.badRequest('A PATCH entry needs a Parameters (FHIRPath Patch) or Binary (JSON Patch) resource', [`${where}.resource`]), index);
}

/**
 * Calls `visit` with every object holding a string `reference` (nested elements, extensions,
 * contained), in document order. A plain recursion: it runs over every entry of every Bundle, and a
 * recursive generator (one per nesting level, each value passed up through all of them) took
 * 3x the CPU: 4.6 against 1.4 µs per Synthea resource (docs/performance.md, issue 21).
 */
function walkReferences(node: unknown, visit: (holder: { reference: string }) => void): void {
  if (Array.isArray(node)) {
    for (const item of node) walkReferences(item, visit);
  } else if (node && typeof node === 'object') {
    const obj = node as Record<string, unknown>;
    if (typeof obj.reference === 'string') visit(obj as { reference: string });
    for (const key in obj) {
      const value = obj[key];
      if (key !== 'reference' && value && typeof value === 'object') walkReferences(value, visit);
    }
  }
}

function collectReferences(body: unknown): string[] {
  const found: string[] = [];
  walkReferences(body, (holder) => found.push(holder.reference));
  return found;
}

/** A Reference.reference rewritten in place, with the value it had. */
interface RewrittenReference {
  holder: { reference: string };
  reference: string;
}

/**
 * Rewrites every Reference.reference in the resource (nested elements, extensions, contained),
 * noting each in `rewritten`. Answers whether a conditional reference (`Type?criteria`) is left
 * (none to rewrite: false, the Bundle then had none to resolve).
 */
function rewriteReferences(body: unknown, references: Map<string, string>, rewritten: RewrittenReference[]): boolean {
  if (references.size === 0) return false;
  let conditionalLeft = false;
  walkReferences(body, (holder) => {
    const target = references.get(holder.reference);
    if (target) {
      rewritten.push({ holder, reference: holder.reference });
      holder.reference = target;
    } else if (CONDITIONAL_REFERENCE_RE.test(holder.reference)) conditionalLeft = true;
  });
  return conditionalLeft;
}

function containsUrnReference(body: unknown): boolean {
  return collectReferences(body).some((r) => r.startsWith('urn:uuid:') || r.startsWith('urn:oid:'));
}

/** Prefixes the failure with the entry index so the client knows which entry failed and why. */
function atEntry(err: unknown, index: number): unknown {
  if (!(err instanceof FhirError)) return err;
  const prefix = `Bundle.entry[${index}]`;
  const issues = err.issues.map((i) => {
    const text = i.diagnostics ?? i.details?.text ?? 'failed';
    const expression = (i.expression ?? []).map((e) => (e.startsWith(prefix) ? e : `${prefix}.resource.${e.replace(/^[A-Z][A-Za-z]+\./, '')}`));
    return {
      ...i,
      diagnostics: text.startsWith(`${prefix}: `) ? text : `${prefix}: ${text}`,
      expression: expression.includes(prefix) ? expression : [...expression, prefix],
    };
  });
  return new FhirError(err.status, issues, undefined, undefined, err.headers);
}

/** A failure to read request.url names it (and says so, for the 404 of an unknown type). */
function inRequestUrl(err: unknown, expression: string): unknown {
  if (!(err instanceof FhirError)) return err;
  const issues = err.issues.map((i) => ({
    ...i,
    diagnostics: `${i.diagnostics ?? 'invalid'} in request.url`,
    expression: [expression],
  }));
  return new FhirError(err.status, issues, undefined, undefined, err.headers);
}

function failureResponse(err: unknown): BundleEntryResponse {
  const fhir = err instanceof FhirError ? err : (databaseFailure(err) ?? new FhirError(500, 'exception', 'Internal server error'));
  const outcome: OperationOutcome = fhir.toOperationOutcome();
  return { status: String(fhir.status), outcome };
}
