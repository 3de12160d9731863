import { Injectable } from '@nestjs/common';
import type { Bundle, Identifier, Parameters, ParametersParameter, Patient } from '@medplum/fhirtypes';
import { FhirError } from '../common/fhir-error';
import type { AccessContext } from '../fhir/pipeline/access-context';
import { buildInteraction } from '../fhir/pipeline/interaction';
import type { InteractionResult, OperationInteraction } from '../fhir/pipeline/interaction';
import { shippedOperationDefinition } from '../fhir/operations/operation-definitions';
import type { OperationInput } from '../fhir/operations/operation-parameters';
import { OperationRegistry } from '../fhir/operations/operation.registry';
import { SearchService } from '../fhir/search/search.service';
import type { StorageSession } from '../fhir/storage/storage-session';
import { PatientLookupOperation } from './patient-lookup.operation';
import { visiblePatients } from './visible-patients';
import { IdentityLinkRepository } from './identity-link.repository';

/**
 * IHE PIXm `Patient/$ihe-pix` (ITI-83, docs/identity.md): given one identifier (`sourceIdentifier`,
 * `system|value`), the identifiers and ids of the same person's Patients at every organization, as
 * far as the caller may see them. The source records are found by an identifier search under the
 * caller's AccessContext; the person's other records are those the master patient index joined to
 * them (Person links, `identity_person_link`), again narrowed to what the caller may read by a
 * search under its AccessContext, so a record hidden by consent is neither returned nor audited.
 */
@Injectable()
export class IhePixOperation extends PatientLookupOperation {
  readonly name = 'ihe-pix';
  readonly definition = shippedOperationDefinition('ihe-pix');

  constructor(
    operations: OperationRegistry,
    private readonly search: SearchService,
    private readonly links: IdentityLinkRepository,
  ) {
    super(operations);
  }

  async execute(ctx: AccessContext, i: OperationInteraction, { tx }: StorageSession, input: OperationInput): Promise<InteractionResult> {
    const source = input.text('sourceIdentifier') ?? '';
    const bar = source.indexOf('|');
    if (bar <= 0 || bar === source.length - 1) throw FhirError.badRequest('sourceIdentifier must be system|value (both given)', ['sourceIdentifier']);
    const system = source.slice(0, bar);
    const value = source.slice(bar + 1);
    const targetSystems = input.texts('targetSystem');

    const bySource = buildInteraction('search-type', { resourceType: 'Patient', path: i.path, query: { identifier: source, _count: '100' } });
    const found = (await this.search.search(ctx, bySource, tx)).resource as Bundle;
    const sources = (found.entry ?? []).filter((e) => e.search?.mode === 'match').map((e) => e.resource!.id!);
    // PIXm: an identifier no visible Patient carries is 404 (not-found), the same whether it is unknown or hidden.
    if (!sources.length) throw FhirError.notFound(`sourceIdentifier: no Patient with identifier ${system}|${value.slice(0, 64)} is known`);

    const person = [...new Set([...sources, ...(await this.links.samePersonAs(tx, sources))])].sort();
    const visible = await visiblePatients(this.search, ctx, person, i.path, tx);

    const parameter: ParametersParameter[] = [];
    const returned = new Set<string>();
    for (const e of visible.entries.sort((a, b) => a.resource!.id!.localeCompare(b.resource!.id!))) {
      const patient = e.resource as Patient;
      const identifiers = (patient.identifier ?? []).filter(
        (x: Identifier) => x.system && x.value && !(x.system === system && x.value === value) && (!targetSystems.length || targetSystems.includes(x.system)),
      );
      if (targetSystems.length && !identifiers.length) continue;
      returned.add(`Patient/${patient.id}`);
      for (const x of identifiers) parameter.push({ name: 'targetIdentifier', valueIdentifier: { ...(x.use ? { use: x.use } : {}), system: x.system, value: x.value, ...(x.assigner ? { assigner: x.assigner } : {}) } });
      parameter.push({ name: 'targetId', valueReference: { reference: `Patient/${patient.id}` } });
    }
    const parameters: Parameters = { resourceType: 'Parameters', ...(parameter.length ? { parameter } : {}) };
    return { status: 200, resource: parameters, touched: visible.touched.filter((t) => returned.has(t.reference)) };
  }
}
