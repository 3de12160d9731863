import { Inject, Injectable } from '@nestjs/common';
import type { Bundle, BundleLink } from '@medplum/fhirtypes';
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
const IGNORED = new Set(['_format', '_pretty', '_total']);

/**
 * Reads and searches of the server's own audit trail (auditors): `AuditEvent?patient=&agent=
 * &entity=&date=&action=&outcome=&purpose=&type=&subtype=&_count=&_sort=` with the R4 search
 * conventions (comma = OR, repeated parameter = AND, date prefixes, searchset Bundle, keyset
 * paging through `Bundle.link` next) answered by the audit table's own columns (docs/audit.md).
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
    const { filter, count, ascending, cursor } = parseAuditQuery(i.query);
    const rows = await this.trail.search({ filter: { ...filter, ...auditScopeFilter(scopes, 's') }, count, ascending, afterSeq: cursor });
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
    const bundle: Bundle = {
      resourceType: 'Bundle',
      type: 'searchset',
      link,
      // FHIR JSON has no empty arrays: no matches, no `entry`.
      ...(page.length ? { entry: page.map((r) => ({ fullUrl: `${this.config.fhirBaseUrl}/AuditEvent/${r.resource.id}`, resource: r.resource, search: { mode: 'match' } })) } : {}),
    };
    return { status: 200, resource: bundle, touched: [] };
  }
}

export interface AuditQuery {
  filter: AuditFilter;
  count: number;
  ascending: boolean;
  cursor?: string;
}

/** Parses the AuditEvent search parameters; anything malformed or unknown is a 400 naming it. */
export function parseAuditQuery(query: QueryParams): AuditQuery {
  const filter: AuditFilter = {};
  let count = DEFAULT_COUNT;
  let ascending = false;
  let cursor: string | undefined;
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
      case '_cursor':
        if (!/^\d{1,19}$/.test(values[0] ?? '')) throw FhirError.badRequest('_cursor must be the value of a next link', ['_cursor']);
        cursor = values[0];
        break;
      default:
        if (IGNORED.has(name)) break;
        // An auditor's typo must not silently widen the answer to the whole log.
        throw FhirError.badRequest(
          `Unknown AuditEvent search parameter '${name.slice(0, 64)}' (${AUDIT_EVENT_SEARCH_PARAMETERS.join(', ')}, _count, _sort)`,
          [name.slice(0, 64)],
          'not-supported',
        );
    }
  }
  return { filter, count, ascending, cursor };
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
