import { Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { BundleProcessor } from '../transaction/bundle.processor';
import { RequestContext } from '../../common/request-context';
import { fromDatabaseError } from '../../common/database-error';
import { FhirError } from '../../common/fhir-error';
import { shift } from '../storage/resource.repository';
import { AccessContext } from './access-context';
import type { Interaction, InteractionResult } from './interaction';
import { InteractionExecutor } from './interaction.executor';
import { AuditStage, AuthorizationStage, ConsentStage } from './pipeline.stages';
import type { Principal } from './principal';

// The pipeline is the only holder of the AccessContext issuer: storage cannot be reached around it.
const issueAccessContext = AccessContext.claimIssuer();

/**
 * The single request pipeline (GUIDE §1): authorize -> consent -> execute -> audit. REST calls,
 * batch entries and operations all come through here.
 */
@Injectable()
export class FhirPipeline {
  constructor(
    private readonly authorization: AuthorizationStage,
    private readonly consent: ConsentStage,
    private readonly executor: InteractionExecutor,
    private readonly audit: AuditStage,
    private readonly bundles: BundleProcessor,
  ) {}

  async handle(principal: Principal, interaction: Interaction): Promise<InteractionResult> {
    const started = performance.now();
    let result: InteractionResult | undefined;
    let failure: unknown;
    const bases = new Set<string>();
    const accessFor = async (i: Interaction): Promise<AccessContext> => {
      const restriction = this.authorization.authorize(principal, i);
      const decision = await this.consent.decide(principal, i);
      bases.add(decision.basis);
      const predicate = restriction
        ? `(${decision.predicate}) AND (${shift(restriction.predicate, decision.params.length)})`
        : decision.predicate;
      const params = restriction ? [...decision.params, ...restriction.params] : decision.params;
      const mayRead = (resourceType: string): boolean => {
        try {
          this.authorization.authorize(principal, { kind: 'search-type', resourceType, query: {}, path: '' });
          return true;
        } catch {
          return false;
        }
      };
      return issueAccessContext(principal, predicate, params, mayRead);
    };
    const run = async (i: Interaction, tx?: EntityManager): Promise<InteractionResult> =>
      this.executor.execute(await accessFor(i), i, tx);
    try {
      if (interaction.kind === 'batch' || interaction.kind === 'transaction') {
        // The Bundle as a whole is authorized; then every entry passes authorization and consent itself.
        this.authorization.authorize(principal, interaction);
        result = await this.bundles.process(interaction, { run, accessFor });
      } else {
        result = await run(interaction);
      }
    } catch (err) {
      // A cancelled statement is audited (and answered) as 503, not as a fault.
      failure = fromDatabaseError(err) ?? err;
    }
    const status = result?.status ?? (failure instanceof FhirError ? failure.status : 500);
    // Fail closed: if the audit record cannot be written, the caller gets an error, not the data.
    await this.audit.record(
      {
        principal,
        interaction,
        outcome: failure ? 'failure' : 'success',
        status,
        entities: entitiesOf(interaction, result),
        durationMs: Math.round(performance.now() - started),
        requestId: RequestContext.requestId(),
        consentBasis: bases.size ? [...bases].join(',') : undefined,
      },
      result,
    );
    if (failure) throw failure;
    return result!;
  }
}

function entitiesOf(interaction: Interaction, result?: InteractionResult): string[] {
  const r = result?.resource;
  if (r && r.resourceType !== 'Bundle' && r.resourceType !== 'OperationOutcome' && r.resourceType !== 'CapabilityStatement' && r.id) {
    return [`${r.resourceType}/${r.id}`];
  }
  if (r?.resourceType === 'Bundle') {
    return (r.entry ?? []).flatMap((e) => {
      if (e.resource?.id && e.resource.resourceType !== 'OperationOutcome') return [`${e.resource.resourceType}/${e.resource.id}`];
      const m = e.response?.location ? /([A-Z][A-Za-z]+\/[A-Za-z0-9\-.]+)\/_history\/[^/]+$/.exec(e.response.location) : null;
      return m ? [m[1]] : [];
    });
  }
  return interaction.resourceType && interaction.id ? [`${interaction.resourceType}/${interaction.id}`] : [];
}
