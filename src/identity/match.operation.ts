import { Inject, Injectable } from '@nestjs/common';
import type { Bundle, BundleEntry, Patient } from '@medplum/fhirtypes';
import { FhirError } from '../common/fhir-error';
import type { AccessContext } from '../fhir/pipeline/access-context';
import { SystemAccess } from '../fhir/pipeline/system-access';
import type { InteractionResult, OperationInteraction } from '../fhir/pipeline/interaction';
import { shippedOperationDefinition } from '../fhir/operations/operation-definitions';
import type { OperationInput } from '../fhir/operations/operation-parameters';
import { OperationRegistry } from '../fhir/operations/operation.registry';
import { SearchService } from '../fhir/search/search.service';
import { ResourceValidator } from '../fhir/validation/resource.validator';
import type { StorageSession } from '../fhir/storage/storage-session';
import { demographicsOf } from './demographics';
import { IDENTITY_CONFIG, IdentityConfig } from './identity-config';
import { MatchScore, scoreMatch } from './match-scorer';
import { PatientDemographicsRepository } from './patient-demographics.repository';
import { PatientLookupOperation } from './patient-lookup.operation';
import { visiblePatients } from './visible-patients';

export const MATCH_GRADE_URL = 'http://hl7.org/fhir/StructureDefinition/match-grade';
const DEFAULT_COUNT = 10;
const MAX_COUNT = 100;

/**
 * `Patient/$match` (R4 Patient-match; docs/identity.md): candidates by blocking keys in SQL under the
 * named system context `identity-matching` (demographics only), scored here, then narrowed in SQL
 * to the Patients the CALLER may see (a `_id` search under the interaction's AccessContext) before
 * anything is counted, graded for `onlyCertainMatches`, cut to `count` or audited: a hidden Patient
 * changes nothing in the answer or the audit record.
 */
@Injectable()
export class MatchOperation extends PatientLookupOperation {
  readonly name = 'match';
  readonly definition = shippedOperationDefinition('match');

  constructor(
    operations: OperationRegistry,
    private readonly system: SystemAccess,
    private readonly search: SearchService,
    private readonly demographics: PatientDemographicsRepository,
    private readonly validator: ResourceValidator,
    @Inject(IDENTITY_CONFIG) private readonly config: IdentityConfig,
  ) {
    super(operations);
  }

  async execute(ctx: AccessContext, i: OperationInteraction, { tx }: StorageSession, input: OperationInput): Promise<InteractionResult> {
    const count = input.integer('count') ?? DEFAULT_COUNT;
    if (count < 1 || count > MAX_COUNT) throw FhirError.badRequest(`count must be between 1 and ${MAX_COUNT}`, ['count']);
    const onlyCertain = input.text('onlyCertainMatches') === 'true';
    const given = input.resource('resource') as Patient;
    // A structurally invalid Patient is refused like a create would be (R4 structure only: the
    // exchange's Patient profile is for stored records, an input to match need not meet it).
    // Base only: profile validation here was a second full validation whose result was dropped.
    const errors = this.validator.baseIssues(given).filter((x) => x.severity === 'error' || x.severity === 'fatal');
    if (errors.length) throw new FhirError(400, errors);
    const wanted = demographicsOf(given);
    if (!wanted.identifiers.length && !wanted.birthDate && !(wanted.family.length && wanted.given.length)) {
      throw FhirError.badRequest('resource: the Patient needs an identifier with a system, a full birthDate, or a family and a given name to match on', ['resource']);
    }

    // Scoring sees every organization's demographics (named, audited system context) …
    // Its audit record commits with this call's own record (one commit per call, both before the response).
    const matching = await this.system.mint('identity-matching', ctx.principal, { auditWithRequest: true });
    const scored = new Map<string, MatchScore>();
    for (const c of await this.demographics.candidates(matching, tx, wanted)) {
      const s = scoreMatch(wanted, c, this.config);
      if (s.grade !== 'certainly-not') scored.set(c.patientId, s);
    }
    // … the caller only what its AccessContext lets it read, decided in SQL before anything is counted.
    const visible = scored.size ? await visiblePatients(this.search, ctx, [...scored.keys()], i.path, tx) : { entries: [], touched: [] };
    const ranked = visible.entries
      .map((e) => ({ entry: e, score: scored.get(e.resource!.id!)! }))
      .sort((a, b) => b.score.weight - a.score.weight || a.entry.resource!.id!.localeCompare(b.entry.resource!.id!));

    let chosen = ranked;
    let outcome: BundleEntry | undefined;
    if (onlyCertain) {
      chosen = ranked.filter((r) => r.score.grade === 'certain');
      if (chosen.length > 1) {
        // R4: with onlyCertainMatches, several certain matches are an error the client must resolve.
        outcome = {
          resource: {
            resourceType: 'OperationOutcome',
            issue: [
              {
                severity: 'warning',
                code: 'multiple-matches',
                diagnostics: `${chosen.length} Patients are certain matches; onlyCertainMatches returns a match only when exactly one is`,
                expression: ['onlyCertainMatches'],
              },
            ],
          },
          search: { mode: 'outcome' },
        };
        chosen = [];
      }
    }
    chosen = chosen.slice(0, count);
    const entries: BundleEntry[] = chosen.map(({ entry, score }) => ({
      ...entry,
      search: { mode: 'match', score: score.score, extension: [{ url: MATCH_GRADE_URL, valueCode: score.grade }] },
    }));
    if (outcome) entries.push(outcome);
    const bundle: Bundle = { resourceType: 'Bundle', type: 'searchset', total: chosen.length, ...(entries.length ? { entry: entries } : {}) };
    const returned = new Set(chosen.map((c) => `Patient/${c.entry.resource!.id}`));
    return { status: 200, resource: bundle, touched: visible.touched.filter((t) => returned.has(t.reference)) };
  }
}
