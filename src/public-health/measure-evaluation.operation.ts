import { Inject, Injectable, OnApplicationBootstrap, OnModuleInit } from '@nestjs/common';
import type { Bundle, Measure, MeasureReport } from '@medplum/fhirtypes';
import type { EntityManager } from 'typeorm';
import { FhirError } from '../common/fhir-error';
import { APP_CONFIG, AppConfig } from '../config/app.config';
import { FhirOperation } from '../fhir/operations/fhir-operation';
import { shippedOperationDefinition } from '../fhir/operations/operation-definitions';
import type { OperationInput } from '../fhir/operations/operation-parameters';
import { OperationRegistry } from '../fhir/operations/operation.registry';
import type { AccessContext } from '../fhir/pipeline/access-context';
import { SystemAccess } from '../fhir/pipeline/system-access';
import type { InteractionResult, OperationInteraction } from '../fhir/pipeline/interaction';
import { ResourceTypeHandlers } from '../fhir/pipeline/resource-type-handler';
import { aggregatePatients, PatientAggregateQuery, PatientDimension } from '../fhir/search/patient-aggregate.query';
import type { StorageSession } from '../fhir/storage/storage-session';
import { loadShippedMeasures, MeasureSpec, StratifierCode } from './measure-definitions';
import { ReportingPeriod, reportingPeriod } from './measure-period';
import { buildMeasureReport } from './measure-report.builder';

/**
 * `GET /fhir/Measure/{id}/$evaluate-measure?periodStart=…&periodEnd=…` (R4, instance level): the
 * summary MeasureReport of one of the server's shipped Measures, counted in PostgreSQL over the
 * search index tables (`aggregatePatients`), small cells withheld (suppression.ts). For the
 * public-health role; docs/public-health.md.
 *
 * Which patients count (`statistics.respectOptOut`): false, every patient, read under the
 * counts-only system context `aggregate-statistics`; true, those the consent-bounded PUBHLTH view
 * admits. Either context is minted once at start (its own `system-access` audit record), so each
 * evaluation is one AuditEvent: the operation's, naming the Measure, the period and the agency.
 */
@Injectable()
export class EvaluateMeasureOperation extends FhirOperation implements OnModuleInit, OnApplicationBootstrap {
  readonly name = 'evaluate-measure';
  readonly definition = shippedOperationDefinition('evaluate-measure');
  readonly levels = ['instance'] as const;
  override readonly resourceTypes = ['Measure'];
  readonly affectsState = false;
  readonly roles = ['public-health'] as const;
  private readonly measures = new Map<string, MeasureSpec>(loadShippedMeasures().map((s) => [s.measure.id!, s]));
  private counting?: Promise<AccessContext>;

  constructor(
    private readonly operations: OperationRegistry,
    private readonly typeHandlers: ResourceTypeHandlers,
    private readonly system: SystemAccess,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    super();
  }

  onModuleInit(): void {
    this.operations.register(this);
    // The shipped Measures are served from here, read-only (like the server's OperationDefinitions).
    this.typeHandlers.register({
      resourceType: 'Measure',
      read: async (_ctx, i) => this.readMeasure(i.id),
      search: async (_ctx, i) => (i.kind === 'search-type' && !Object.keys(i.query).some((k) => !k.startsWith('_')) ? this.listMeasures() : undefined),
      refuseChange: (i) =>
        i.id !== undefined && this.measures.has(i.id)
          ? new FhirError(405, 'not-supported', `Measure/${i.id} is a measure of this server and cannot be changed`, undefined, { Allow: 'GET' })
          : undefined,
    });
  }

  onApplicationBootstrap(): void {
    // Minted once per process: the policy is configuration, and the context's predicate reads consent at query time.
    this.counting = this.config.statistics.respectOptOut ? this.system.mintFor('PUBHLTH') : this.system.mint('aggregate-statistics');
    this.counting.catch(() => undefined);
  }

  async execute(ctx: AccessContext, i: OperationInteraction, { tx }: StorageSession, input: OperationInput): Promise<InteractionResult> {
    const spec = this.measures.get(i.id!);
    if (!spec) throw FhirError.notFound(`Measure/${i.id} is not a measure this server evaluates`);
    const reportType = input.text('reportType') ?? 'summary';
    if (reportType === 'subject' || reportType === 'subject-list' || reportType === 'individual' || reportType === 'patient-list') {
      // Individual-level data goes through a clinical-access client's own consent-checked searches, never here.
      throw new FhirError(403, 'forbidden', `reportType ${reportType} is individual-level: this server evaluates summary reports only`, ['reportType']);
    }
    if (reportType !== 'summary') throw FhirError.badRequest(`reportType '${reportType.slice(0, 32)}' is not known (summary)`, ['reportType']);
    const period = reportingPeriod(input.text('periodStart')!, input.text('periodEnd')!);
    const counting = await (this.counting ??= this.config.statistics.respectOptOut ? this.system.mintFor('PUBHLTH') : this.system.mint('aggregate-statistics'));
    const report = await this.report(spec, period, counting, tx);
    return {
      status: 200,
      resource: report,
      touched: [{ reference: `Measure/${spec.measure.id}`, patients: [] }],
      auditQuery: new URLSearchParams({ periodStart: period.start, periodEnd: period.end, reportType }).toString(),
    };
  }

  /** The suppressed summary report of `spec` over `period`, counted under `counting` (also what bench:stats times for its two-stratifier variants). */
  async report(spec: MeasureSpec, period: ReportingPeriod, counting: AccessContext, tx: EntityManager): Promise<MeasureReport> {
    const dimensionCodes = [...new Set(spec.stratifiers.flat())];
    const q = aggregateQuery(spec, dimensionCodes, period, this.config.statistics);
    const asOf = new Date().toISOString();
    const rows = await aggregatePatients(counting, tx, q);
    const bands = this.config.statistics.ageBands;
    return buildMeasureReport({
      spec,
      dimensions: dimensionCodes,
      rows,
      period: { start: period.start, end: period.end },
      asOf,
      threshold: this.config.statistics.threshold,
      label: (code, value) => (code === 'age-band' && value !== 'unknown' ? ageBandLabel(bands, Number(value)) : value),
    });
  }

  private readMeasure(id: string): InteractionResult | undefined {
    const spec = this.measures.get(id);
    return spec && { status: 200, resource: spec.measure, touched: [{ reference: `Measure/${id}`, patients: [] }] };
  }

  private listMeasures(): InteractionResult {
    const measures: Measure[] = [...this.measures.values()].map((s) => s.measure);
    const bundle: Bundle = {
      resourceType: 'Bundle',
      type: 'searchset',
      total: measures.length,
      link: [{ relation: 'self', url: `${this.config.fhirBaseUrl}/Measure` }],
      entry: measures.map((m) => ({ fullUrl: `${this.config.fhirBaseUrl}/Measure/${m.id}`, resource: m, search: { mode: 'match' } })),
    };
    return { status: 200, resource: bundle, touched: measures.map((m) => ({ reference: `Measure/${m.id}`, patients: [] })) };
  }
}

/** The aggregation a Measure asks for over one period. */
export function aggregateQuery(
  spec: MeasureSpec,
  dimensionCodes: StratifierCode[],
  period: { from: Date; to: Date },
  settings: AppConfig['statistics'],
): PatientAggregateQuery {
  const dimension = (code: StratifierCode): PatientDimension => {
    switch (code) {
      case 'region':
        return { kind: 'region', by: settings.region, digits: settings.postalPrefixDigits };
      case 'age-band':
        return { kind: 'age-band', bands: settings.ageBands };
      case 'sex':
        return { kind: 'sex' };
      case 'reporting-organization':
        return { kind: 'custodian' };
      case 'payer-type':
        return { kind: 'event-token', param: 'type' };
      case 'payer':
        return { kind: 'event-reference', param: 'payor' };
      case 'month':
        return { kind: 'event-month' };
    }
  };
  const index = (c: StratifierCode): number => dimensionCodes.indexOf(c);
  const q = spec.qualifying;
  // Every single dimension (a pair's margins too) and every stratifier: the lines suppression needs.
  const sets = [[], ...dimensionCodes.map((c) => [index(c)]), ...spec.stratifiers.filter((s) => s.length === 2).map((s) => s.map(index))];
  return {
    asOf: new Date(period.to.getTime() - 1),
    ...(spec.cohortAgeMonths ? { cohortAgeMonths: spec.cohortAgeMonths } : {}),
    qualifying: {
      resourceType: q.resourceType,
      patientParam: q.patientParam,
      tokens: q.tokens,
      date: { param: q.dateParam, from: q.window === 'period' ? period.from : new Date(Date.UTC(1, 0, 1)), to: period.to, match: q.dateMatch },
      ...(q.beforeAgeMonths !== undefined ? { beforeAgeMonths: q.beforeAgeMonths } : {}),
      pick: q.pick,
    },
    mode: spec.scoring === 'proportion' ? 'proportion' : 'cases',
    dimensions: dimensionCodes.map(dimension),
    groupingSets: sets,
  };
}

/** `18-44`, or `65+` for the last band. */
export function ageBandLabel(bands: number[], lower: number): string {
  const next = bands.find((b) => b > lower);
  return next === undefined ? `${lower}+` : `${lower}-${next - 1}`;
}
