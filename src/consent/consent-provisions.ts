import type { Coding, Consent, ConsentProvision, Period } from '@medplum/fhirtypes';
import { FhirError } from '../common/fhir-error';

/** One materialized decision row (table consent_provision; docs/consent.md). NULL criteria match anything. */
export interface ProvisionRow {
  consentId: string;
  consentVersion: number;
  /** FHIRPath-like path of the provision in the Consent, e.g. `provision.provision[1]`: explains a decision. */
  provisionPath: string;
  patientId: string;
  /** Nesting level: a nested provision is an exception to its parent and overrides it. */
  depth: number;
  permit: boolean;
  actorOrg: string | null;
  /** `Practitioner/{id}`, `PractitionerRole/{id}` or `CareTeam/{id}`: an individual actor, matched against the token's `on_behalf_of`. */
  actorRef: string | null;
  purpose: string | null;
  resourceClass: string | null;
  /** `system|code`, as in the resource rows' `security_labels`. */
  securityLabel: string | null;
  /** `Type/id` of a specific resource (provision.data with meaning instance). */
  dataRef: string | null;
  /** provision.code: a Coding the row must carry in its `code` search index (system null = any system). */
  codeSystem: string | null;
  code: string | null;
  /** [start, end) as ISO instants; null = unbounded. */
  period: [string | null, string | null];
  dataPeriod: [string | null, string | null];
}

/** What a provision limits, inherited by its nested provisions (which may narrow it further). */
interface Scope {
  /** Actor references (`Organization/{id}`, or an individual: Practitioner, PractitionerRole, CareTeam). */
  actors: string[] | null;
  purposes: string[] | null;
  classes: string[] | null;
  labels: string[] | null;
  data: string[] | null;
  /** `system|code` of provision.code's Codings (system empty = any system). */
  codes: string[] | null;
  period: [string | null, string | null];
  dataPeriod: [string | null, string | null];
}

const ANY: Scope = { actors: null, purposes: null, classes: null, labels: null, data: null, codes: null, period: [null, null], dataPeriod: [null, null] };
/** Actions that mean reading the data; a provision limited to other actions (e.g. `correct`) does not decide reads. */
const READ_ACTIONS = new Set(['access', 'use', 'disclose', 'collect']);
const ID_RE = /^[A-Za-z0-9\-.]{1,64}$/;
/** Actors a provision may name: the requesting organization, or the individual or team a token declares (docs/consent.md). */
const ACTOR_RE = /^(Organization|Practitioner|PractitionerRole|CareTeam)\/[A-Za-z0-9\-.]{1,64}$/;

/** The `Patient/{id}` a Consent is about (profile hie-consent requires it). */
export function consentPatientId(consent: Consent): string | undefined {
  const m = /^Patient\/([A-Za-z0-9\-.]{1,64})$/.exec(consent.patient?.reference ?? '');
  return m?.[1];
}

/**
 * The decision rows of a Consent: none unless it is active (inactive, rejected, draft, proposed and
 * entered-in-error Consents have no effect). Every nested provision is an exception within its
 * parent: its criteria are the parent's, narrowed by its own (an empty intersection decides nothing).
 * Criteria this server cannot enforce are refused (422) rather than silently ignored.
 */
export function provisionRows(consent: Consent, versionId: number): ProvisionRow[] {
  if (consent.status !== 'active' || !consent.provision) return [];
  const patientId = consentPatientId(consent);
  if (!patientId) throw unenforceable('Consent.patient must reference a Patient by id (Patient/{id})', ['Consent.patient']);
  const rows: ProvisionRow[] = [];
  const walk = (p: ConsentProvision, path: string, depth: number, parent: Scope): void => {
    if (p.type !== 'permit' && p.type !== 'deny') throw unenforceable(`${path}.type must be permit or deny`, [`Consent.${path}.type`]);
    const scope = narrow(parent, ownScope(p, path));
    const actions = (p.action ?? []).flatMap((a) => (a.coding ?? []).map((c) => c.code ?? ''));
    const decidesReads = !actions.length || actions.some((a) => READ_ACTIONS.has(a));
    if (scope && decidesReads) rows.push(...expand(scope, { consentId: consent.id!, consentVersion: versionId, provisionPath: path, patientId, depth, permit: p.type === 'permit' }));
    (p.provision ?? []).forEach((child, i) => walk(child, `${path}.provision[${i}]`, depth + 1, scope ?? NOTHING));
  };
  walk(consent.provision, 'provision', 0, ANY);
  return rows;
}

/** A parent whose criteria intersect to nothing: its exceptions decide nothing either. */
const NOTHING: Scope = { ...ANY, actors: [] };

function ownScope(p: ConsentProvision, path: string): Scope {
  const actors = (p.actor ?? []).map((a, i) => {
    const ref = a.reference?.reference ?? '';
    // Organizations are known from the client; individuals and teams from the token's on_behalf_of.
    if (!ACTOR_RE.test(ref)) {
      throw unenforceable(
        `${path}.actor[${i}].reference must reference an Organization, Practitioner, PractitionerRole or CareTeam by id (Type/{id})`,
        [`Consent.${path}.actor[${i}].reference`],
      );
    }
    return ref;
  });
  const provisionCodes = (p.code ?? []).flatMap((cc, i) => {
    if (!cc.coding?.length) throw unenforceable(`${path}.code[${i}] must have a coding (text alone cannot be matched)`, [`Consent.${path}.code[${i}]`]);
    return cc.coding.map((c, j) => {
      if (!c.code) throw unenforceable(`${path}.code[${i}].coding[${j}] must have a code`, [`Consent.${path}.code[${i}].coding[${j}].code`]);
      return `${c.system ?? ''}|${c.code}`;
    });
  });
  const data = (p.data ?? []).map((d, i) => {
    const ref = d.reference?.reference ?? '';
    if (d.meaning !== 'instance' || !/^[A-Z][A-Za-z]+\/[A-Za-z0-9\-.]{1,64}$/.test(ref)) {
      throw unenforceable(`${path}.data[${i}] must name one resource (meaning instance, reference Type/id)`, [`Consent.${path}.data[${i}]`]);
    }
    return ref;
  });
  for (const [name, r] of [['period', range(p.period)], ['dataPeriod', range(p.dataPeriod)]] as const) {
    if (r[0] && r[1] && r[0] > r[1]) throw unenforceable(`${path}.${name} ends before it starts`, [`Consent.${path}.${name}`]);
  }
  return {
    actors: actors.length ? actors : null,
    purposes: codes(p.purpose),
    classes: codes(p.class),
    labels: p.securityLabel?.length ? p.securityLabel.map((c) => `${c.system ?? ''}|${c.code ?? ''}`) : null,
    data: data.length ? data : null,
    codes: provisionCodes.length ? provisionCodes : null,
    period: range(p.period),
    dataPeriod: range(p.dataPeriod),
  };
}

function codes(list: Coding[] | undefined): string[] | null {
  const out = (list ?? []).map((c) => c.code).filter((c): c is string => !!c && ID_RE.test(c));
  return out.length ? out : null;
}

/** [start, end) of a Period. FHIR's Period.end is inclusive: a date-only end runs to the end of its day, month or year. */
function range(p: Period | undefined): [string | null, string | null] {
  return [instant(p?.start, false), instant(p?.end, true)];
}

const DATE_ONLY = /^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?$/;

function instant(v: string | undefined, end: boolean): string | null {
  if (!v) return null;
  const m = DATE_ONLY.exec(v);
  if (!m) return new Date(v).toISOString();
  const [y, month, day] = [Number(m[1]), m[2] ? Number(m[2]) - 1 : 0, m[3] ? Number(m[3]) : 1];
  if (!end) return new Date(Date.UTC(y, month, day)).toISOString();
  return new Date(m[3] ? Date.UTC(y, month, day + 1) : m[2] ? Date.UTC(y, month + 1, 1) : Date.UTC(y + 1, 0, 1)).toISOString();
}

/** Parent AND child: lists intersect (an empty intersection is null scope: nothing), ranges intersect. */
function narrow(parent: Scope, own: Scope): Scope | undefined {
  const list = (a: string[] | null, b: string[] | null): string[] | null | undefined => {
    if (a === null) return b;
    if (b === null) return a;
    const both = a.filter((x) => b.includes(x));
    return both.length ? both : undefined;
  };
  const lo = (a: string | null, b: string | null) => (a === null ? b : b === null ? a : a > b ? a : b);
  const hi = (a: string | null, b: string | null) => (a === null ? b : b === null ? a : a < b ? a : b);
  const out = {
    actors: list(parent.actors, own.actors),
    purposes: list(parent.purposes, own.purposes),
    classes: list(parent.classes, own.classes),
    labels: list(parent.labels, own.labels),
    data: list(parent.data, own.data),
    codes: list(parent.codes, own.codes),
    period: [lo(parent.period[0], own.period[0]), hi(parent.period[1], own.period[1])] as [string | null, string | null],
    dataPeriod: [lo(parent.dataPeriod[0], own.dataPeriod[0]), hi(parent.dataPeriod[1], own.dataPeriod[1])] as [string | null, string | null],
  };
  if ([out.actors, out.purposes, out.classes, out.labels, out.data, out.codes].some((l) => l === undefined || (Array.isArray(l) && !l.length))) return undefined;
  // Disjoint periods: the exception can never apply.
  for (const r of [out.period, out.dataPeriod]) if (r[0] && r[1] && r[0] >= r[1]) return undefined;
  return out as Scope;
}

/** One row per combination of the listed criteria (each list is "any of"; criteria combine with AND). */
function expand(scope: Scope, head: Pick<ProvisionRow, 'consentId' | 'consentVersion' | 'provisionPath' | 'patientId' | 'depth' | 'permit'>): ProvisionRow[] {
  const rows: ProvisionRow[] = [];
  for (const actor of scope.actors ?? [null])
    for (const purpose of scope.purposes ?? [null])
      for (const resourceClass of scope.classes ?? [null])
        for (const securityLabel of scope.labels ?? [null])
          for (const dataRef of scope.data ?? [null])
            for (const coding of scope.codes ?? [null]) {
              const org = actor?.startsWith('Organization/') ? actor.slice('Organization/'.length) : null;
              const bar = coding?.indexOf('|') ?? -1;
              rows.push({
                ...head,
                actorOrg: org,
                actorRef: actor && !org ? actor : null,
                purpose,
                resourceClass,
                securityLabel,
                dataRef,
                codeSystem: coding && bar > 0 ? coding.slice(0, bar) : null,
                code: coding ? coding.slice(bar + 1) : null,
                period: scope.period,
                dataPeriod: scope.dataPeriod,
              });
            }
  return rows;
}

/** 422: a Consent this exchange cannot enforce as written is refused, never half-applied. */
function unenforceable(diagnostics: string, expression: string[]): FhirError {
  return new FhirError(422, 'business-rule', diagnostics, expression);
}
