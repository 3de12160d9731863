import { Injectable } from '@nestjs/common';
import { RequestContext } from '../../common/request-context';
import { FhirError } from '../../common/fhir-error';
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
  ) {}

  async handle(principal: Principal, interaction: Interaction): Promise<InteractionResult> {
    const started = performance.now();
    let result: InteractionResult | undefined;
    let failure: unknown;
    let consentBasis: string | undefined;
    try {
      this.authorization.authorize(principal, interaction);
      const decision = await this.consent.decide(principal, interaction);
      consentBasis = decision.basis;
      const ctx = issueAccessContext(principal, decision.predicate, decision.params);
      result = await this.executor.execute(ctx, interaction);
    } catch (err) {
      failure = err;
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
        consentBasis,
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
    return (r.entry ?? []).flatMap((e) => (e.resource?.id ? [`${e.resource.resourceType}/${e.resource.id}`] : []));
  }
  return interaction.resourceType && interaction.id ? [`${interaction.resourceType}/${interaction.id}`] : [];
}
