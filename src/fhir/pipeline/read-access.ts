import { Global, Injectable, Module } from '@nestjs/common';
import type { SqlBinder } from './access-predicate';

/**
 * SQL expressions for the attributes of the row being judged: columns at an alias (`r.custodian_org`,
 * …) when a query renders the predicate, bound values when the audit explains a decision by id.
 */
export interface JudgedRow {
  /** The custodian organization: its own data is visible to it whatever the consents say. */
  custodianOrg: string;
  compartments: string;
  securityLabels: string;
  resourceType: string;
  id: string;
  /**
   * The period a version is judged on for `dataPeriod` (a tstzrange): its clinical period, or the
   * instant it was recorded where its type or the version has none (docs/consent.md).
   */
  clinicalPeriod: string;
  /** A Binary's `securityContext.reference` (text); absent where the row cannot be a Binary's. */
  securityContext?: string;
}

/** SQL expressions (bound values) for who asks: organization and purpose of use, either may be NULL. */
export interface JudgingRequester {
  organization: string;
  purpose: string;
}

/**
 * A read-access contributor (docs/consent.md, "Read-access contributors"): a module's reason why a
 * requester may see a patient's data beyond the base policy (referrals: an active referral to the
 * requester's organization for this patient). The consent stage ORs it into the base policy of each
 * patient of a row, so a matching patient denial and an unpermitted sensitive label still win.
 */
export interface PatientAccessContributor {
  /** Stable name, unique among contributors. */
  readonly name: string;
  /** The basis recorded in audit when it opened a patient's data (e.g. `referral`). */
  readonly basis: string;
  /**
   * Optional: the purposes of use it may open data for (referrals: TREAT); absent, any. A requester
   * of another purpose (or none) gets a predicate without it: decided in the text, not by a bound
   * value, so a prepared statement's generic plan does not carry subqueries that can never match
   * (docs/performance.md, "Mix CPU back to the parent"). `render` must still check the purpose.
   */
  readonly purposes?: readonly string[];
  /**
   * A boolean SQL condition: the requester may see `patient`'s data of `row`. Values only through
   * `bind`; aliases it introduces start with its own prefix. Must judge history rows too (it sees
   * only the attributes in `row`, which both tables have).
   */
  render(patient: string, row: JudgedRow, requester: JudgingRequester, bind: SqlBinder): string;
  /**
   * Optional: a text SQL expression naming what opened `patient`'s data of `row` (e.g. the referral
   * `Task/{id}`), NULL where nothing did. The audit record of a read by id names it beside the basis.
   */
  renderGrant?(patient: string, row: JudgedRow, requester: JudgingRequester, bind: SqlBinder): string;
}

/**
 * A module's narrowing rule (referrals: a referral's Task and ServiceRequest are read by their
 * parties only): a boolean SQL condition ANDed with the consent decision of every row a requester
 * other than its custodian reads, so it can hide what patient consent would show, never show more.
 * It must let pass every row it is not about (cheaply: test `row.resourceType` first).
 */
export interface ReadRestriction {
  readonly name: string;
  readonly resourceTypes: readonly string[];
  render(row: JudgedRow, requester: JudgingRequester, bind: SqlBinder): string;
}

/**
 * Who besides the custodian organization may read a type outside the Patient compartment (referrals:
 * a Task's requester and owner organizations). ORed into the type's rule from
 * `src/consent/type-access-rules.ts`; it can widen the custodian-only rule, never narrow `shared`.
 */
export interface TypeAccessRule {
  readonly name: string;
  readonly resourceTypes: readonly string[];
  render(row: JudgedRow, requester: JudgingRequester, bind: SqlBinder): string;
}

/**
 * The registered read-access extensions. A module registers in its `onModuleInit`; the consent
 * stage renders them into every interaction's consent fragment (so search, includes, chains, _has,
 * history, vread and writes obey them).
 */
@Injectable()
export class ReadAccessRegistry {
  private readonly patientContributors: PatientAccessContributor[] = [];
  private readonly typeRules = new Map<string, TypeAccessRule[]>();
  private readonly readRestrictions: ReadRestriction[] = [];
  private readonly names = new Set<string>();

  registerContributor(contributor: PatientAccessContributor): void {
    this.claim(contributor.name);
    this.patientContributors.push(contributor);
  }

  registerTypeRule(rule: TypeAccessRule): void {
    this.claim(rule.name);
    for (const type of rule.resourceTypes) this.typeRules.set(type, [...(this.typeRules.get(type) ?? []), rule]);
  }

  registerRestriction(restriction: ReadRestriction): void {
    this.claim(restriction.name);
    this.readRestrictions.push(restriction);
  }

  restrictions(): readonly ReadRestriction[] {
    return this.readRestrictions;
  }

  contributors(): readonly PatientAccessContributor[] {
    return this.patientContributors;
  }

  /** The contributors that may open data for a requester of this purpose of use. */
  contributorsFor(purpose: string | undefined): readonly PatientAccessContributor[] {
    return this.patientContributors.filter((c) => !c.purposes || (purpose !== undefined && c.purposes.includes(purpose)));
  }

  /** Registered rules by type. */
  rulesByType(): ReadonlyMap<string, readonly TypeAccessRule[]> {
    return this.typeRules;
  }

  private claim(name: string): void {
    if (this.names.has(name)) throw new Error(`Read-access extension '${name}' is registered twice`);
    this.names.add(name);
  }
}

/** Global, so any module (referrals, a test's) registers without importing the consent module. */
@Global()
@Module({ providers: [ReadAccessRegistry], exports: [ReadAccessRegistry] })
export class ReadAccessModule {}
