import { Inject, Injectable } from '@nestjs/common';
import type { AuditEvent, Bundle, BundleEntry, BundleLink } from '@medplum/fhirtypes';
import { APP_CONFIG, AppConfig } from '../config/app.config';
import { FhirError } from '../common/fhir-error';
import { parseFhirDateRange } from '../common/fhir-date';
import type { Interaction, InteractionResult, QueryParams } from '../fhir/pipeline/interaction';
import { AuditFilter, AuditTrailRepository } from './audit-trail.repository';
import { parseSmartScope, scopeAllows, SmartScope } from '../auth/smart-scope';

/** The AuditEvent search parameters the audit store answers (the CapabilityStatement lists exactly these). */
export const AUDIT_EVENT_SEARCH_PARAMETERS: readonly string[] = ['patient', 'agent', 'entity', 'date', 'action', 'outcome', 'purpose', 'type', 'subtype'];
const DEFAULT_COUNT = 20;
const MAX_COUNT = 1000;
/** Parameters that only shape the response; accepted and ignored here. */
const IGNORED = new Set(['_format', '_pretty']);
/** The `_include` values the audit store accepts (the CapabilityStatement lists exactly these). */
export const AUDIT_EVENT_INCLUDES: readonly string[] = ['AuditEvent:entity', 'AuditEvent:patient'];
/** `_include` targets of AuditEvent (R4 search parameters `entity` and `patient`, optionally typed). */
const INCLUDE_RE = /^AuditEvent:(entity|patient)(?::([A-Z][A-Za-z]{1,63}))?$/;

/**
 * Reads and searches of the server's own audit trail (auditors): `AuditEvent?patient=&agent=
 * &entity=&date=&action=&outcome=&purpose=&type=&subtype=&_count=&_sort=` with the R4 search
 * conventions (comma = OR, repeated parameter = AND, date prefixes, searchset Bundle, keyset
 * paging through `Bundle.link` next, `_summary=count`, `_total`) answered by the audit table's own
 * columns (docs/audit.md).
 */
@Injectable()
export class AuditEventSearch {
  constructor(
    private readonly trail: AuditTrailRepository,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** `scopes`: the client's granted scopes, whose AuditEvent queries bound what it may see. */
  async read(id: string, scopes: readonly string[] = []): Promise<InteractionResult | undefined> {
    const resource = await this.trail.read(id, auditScopeFilter(scopes, 'r'));
    return resource ? { status: 200, resource, touched: [] } : undefined;
  }

  async search(i: Interaction, scopes: readonly string[] = []): Promise<InteractionResult> {
    const { filter: asked, count, ascending, cursor, summaryCount, total: totalMode, include } = parseAuditQuery(i.query);
    const filter = { ...asked, ...auditScopeFilter(scopes, 's') };
    // _summary=count: the total alone (search.html#summary), from the indexed columns.
    const total = summaryCount
      ? await this.trail.count(filter)
      : totalMode === 'accurate'
        ? await this.trail.count(filter)
        : totalMode === 'estimate'
          ? await this.trail.estimate(filter)
          : undefined;
    // `_count=0` asks for no entries (often beside _total): no page, so no next link to build from it.
    const rows = summaryCount || count === 0 ? [] : await this.trail.search({ filter, count, ascending, afterSeq: cursor });
    const more = rows.length > count;
    const page = rows.slice(0, count);
    const base = `${this.config.fhirBaseUrl}${i.path}`;
    const url = (next?: string): string => {
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(i.query)) {
        if (k === '_cursor') continue;
        for (const one of Array.isArray(v) ? v : v !== undefined ? [v] : []) q.append(k, one);
      }
      if (next) q.set('_cursor', next);
      const s = q.toString();
      return s ? `${base}?${s}` : base;
    };
    const link: BundleLink[] = [{ relation: 'self', url: url(cursor) }];
    if (more) link.push({ relation: 'next', url: url(page[page.length - 1].seq) });
    const entry: BundleEntry[] = page.map((r) => ({ fullUrl: `${this.config.fhirBaseUrl}/AuditEvent/${r.resource.id}`, resource: r.resource, search: { mode: 'match' } }));
    const withheld = includeTargets(page.map((r) => r.resource), include);
    if (withheld.size) {
      // No role both searches the trail and reads clinical data (SmartAuthorization): the targets
      // are withheld, and said so rather than left silently absent (docs/audit.md).
      entry.push({
        resource: {
          resourceType: 'OperationOutcome',
          issue: [
            {
              severity: 'warning',
              code: 'suppressed',
              diagnostics: `${withheld.size} resource(s) (${[...new Set([...withheld].map((r) => r.split('/')[0]))].sort().join(', ')}) named by these AuditEvents are not included: the audit trail search returns AuditEvents only; read them with a client allowed to`,
              expression: ['_include'],
            },
          ],
        },
        search: { mode: 'outcome' },
      });
    }
    const bundle: Bundle = {
      resourceType: 'Bundle',
      type: 'searchset',
      ...(total !== undefined ? { total } : {}),
      link,
      // FHIR JSON has no empty arrays: no matches, no `entry`.
      ...(summaryCount || !entry.length ? {} : { entry }),
    };
    return { status: 200, resource: bundle, touched: [] };
  }
}

/** What `_include=AuditEvent:entity|patient[:Type]` names on a page (`Type/id`, versions dropped). */
function includeTargets(events: readonly AuditEvent[], include: readonly AuditInclude[]): Set<string> {
  const out = new Set<string>();
  for (const spec of include) {
    for (const e of events) {
      for (const x of e.entity ?? []) {
        const ref = x.what?.reference?.replace(/\/_history\/.*$/, '');
        if (!ref || !/^[A-Z][A-Za-z]+\/[^/]+$/.test(ref)) continue;
        const type = ref.split('/')[0];
        // `patient` is the entity whose reference is a Patient (R4 AuditEvent-patient expression).
        if (spec.param === 'patient' && type !== 'Patient') continue;
        if (spec.targetType && type !== spec.targetType) continue;
        out.add(ref);
      }
    }
  }
  return out;
}

export interface AuditInclude {
  param: 'entity' | 'patient';
  targetType?: string;
}

export interface AuditQuery {
  filter: AuditFilter;
  count: number;
  ascending: boolean;
  cursor?: string;
  /** `_summary=count`: the total only, no entries. */
  summaryCount: boolean;
  total: 'none' | 'estimate' | 'accurate';
  include: AuditInclude[];
}

/** Parses the AuditEvent search parameters; anything malformed or unknown is a 400 naming it. */
export function parseAuditQuery(query: QueryParams): AuditQuery {
  const filter: AuditFilter = {};
  let count = DEFAULT_COUNT;
  let ascending = false;
  let cursor: string | undefined;
  let summaryCount = false;
  let total: AuditQuery['total'] = 'none';
  const include: AuditInclude[] = [];
  for (const [name, raw] of Object.entries(query)) {
    const values = Array.isArray(raw) ? raw : raw !== undefined ? [raw] : [];
    const ors = (strip: (v: string) => string = (v) => v): string[][] => values.map((v) => v.split(',').map((x) => strip(x.trim())).filter(Boolean));
    switch (name) {
      case 'patient':
        filter.patients = ors((v) => v.replace(/^(?:.*\/)?Patient\//, ''));
        break;
      case 'agent':
        // A client id, `system|client-id`, or `Organization/<id>`.
        filter.agents = ors((v) => (v.includes('|') ? v.slice(v.indexOf('|') + 1) : v.replace(/^.*\/(Organization\/)/, '$1')));
        break;
      case 'entity':
        filter.entities = ors((v) => v.replace(/\/_history\/.*$/, '').replace(/^https?:\/\/.*\/([A-Z][A-Za-z]+\/[^/]+)$/, '$1'));
        break;
      case 'action':
        filter.actions = ors();
        break;
      case 'outcome':
        filter.outcomes = ors();
        break;
      case 'purpose':
        filter.purposes = ors(codeOf);
        break;
      case 'type':
        filter.types = ors(codeOf);
        break;
      case 'subtype':
        filter.subtypes = ors(codeOf);
        break;
      case 'date':
        filter.recorded = values.map((v) => dateRange(v));
        break;
      case '_count': {
        const n = Number(values[values.length - 1]);
        if (!Number.isInteger(n) || n < 0) throw FhirError.badRequest('_count must be a non-negative integer', ['_count']);
        count = Math.min(n, MAX_COUNT);
        break;
      }
      case '_sort':
        if (!['date', '-date'].includes(values[values.length - 1])) throw FhirError.badRequest('AuditEvent may be sorted by date or -date only', ['_sort'], 'not-supported');
        ascending = values[values.length - 1] === 'date';
        break;
      case '_summary': {
        const v = values[values.length - 1];
        // The trail's records have no summary form; `false` is the whole record anyway.
        if (v !== 'count' && v !== 'false') throw FhirError.badRequest(`AuditEvent searches support _summary=count (and false) only, not '${String(v).slice(0, 20)}'`, ['_summary'], 'not-supported');
        summaryCount = v === 'count';
        break;
      }
      case '_total': {
        const v = values[values.length - 1];
        if (v !== 'none' && v !== 'estimate' && v !== 'accurate') throw FhirError.badRequest('_total must be none, estimate or accurate', ['_total']);
        total = v;
        break;
      }
      case '_include':
        for (const v of values) {
          const m = INCLUDE_RE.exec(v);
          if (!m) throw FhirError.badRequest(`AuditEvent searches include AuditEvent:entity or AuditEvent:patient only, not '${v.slice(0, 64)}'`, ['_include'], 'not-supported');
          include.push({ param: m[1] as AuditInclude['param'], targetType: m[2] });
        }
        break;
      case '_cursor':
        if (!/^\d{1,19}$/.test(values[0] ?? '')) throw FhirError.badRequest('_cursor must be the value of a next link', ['_cursor']);
        cursor = values[0];
        break;
      default:
        if (IGNORED.has(name)) break;
        // An auditor's typo must not silently widen the answer to the whole log.
        throw FhirError.badRequest(
          `Unknown AuditEvent search parameter '${name.slice(0, 64)}' (${AUDIT_EVENT_SEARCH_PARAMETERS.join(', ')}, _count, _sort, _total, _summary, _include)`,
          [name.slice(0, 64)],
          'not-supported',
        );
    }
  }
  return { filter, count, ascending, cursor, summaryCount, total, include };
}

/**
 * SMART v2 scope queries on AuditEvent (`system/AuditEvent.rs?outcome=8`, `?agent=Organization/x`):
 * an auditor granted only restricted scopes sees only the records matching one of them, in reads
 * and searches alike — the same bound as scope queries put on clinical resources. An unrestricted
 * scope allowing the verb lifts the bound.
 */
export function auditScopeFilter(scopes: readonly string[], verb: 'r' | 's'): AuditFilter {
  const allowing = scopes.map(parseSmartScope).filter((s): s is SmartScope => !!s && scopeAllows(s, 'AuditEvent', verb));
  if (!allowing.length || allowing.some((s) => !s.restrictions.length)) return {};
  return { scopeAlternatives: allowing.map((s) => auditScopeRestriction(s)) };
}

/**
 * One scope's query as an audit filter: only the nine parameters the audit store answers (checked
 * when the client is registered, and again here so a scope never widens to the whole log).
 */
export function auditScopeRestriction(scope: SmartScope): AuditFilter {
  const query: QueryParams = {};
  for (const [name, value] of scope.restrictions) {
    if (!AUDIT_EVENT_SEARCH_PARAMETERS.includes(name)) {
      throw new FhirError(403, 'forbidden', `Scope ${scope.raw.slice(0, 120)} restricts AuditEvent by '${name.slice(0, 64)}'; the audit trail answers ${AUDIT_EVENT_SEARCH_PARAMETERS.join(', ')}`);
    }
    const had = query[name];
    query[name] = had === undefined ? value : [...(Array.isArray(had) ? had : [had]), value];
  }
  return parseAuditQuery(query).filter;
}

function codeOf(v: string): string {
  return v.includes('|') ? v.slice(v.indexOf('|') + 1) : v;
}

function dateRange(value: string): { min?: string; max?: string } {
  const m = /^(eq|ge|gt|le|lt|sa|eb)?(.*)$/.exec(value)!;
  const prefix = m[1] ?? 'eq';
  const range = parseFhirDateRange(m[2]);
  if (!range) throw FhirError.badRequest(`date: '${value.slice(0, 40)}' is not a FHIR date with an optional prefix (eq, ge, gt, le, lt, sa, eb)`, ['date']);
  switch (prefix) {
    case 'eq':
      return { min: range.start, max: range.end };
    case 'ge':
      return { min: range.start };
    case 'gt':
    case 'sa':
      return { min: range.end };
    case 'le':
      return { max: range.end };
    default:
      return { max: range.start };
  }
}
