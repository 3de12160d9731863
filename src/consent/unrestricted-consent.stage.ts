import { Injectable } from '@nestjs/common';
import type { Interaction } from '../fhir/pipeline/interaction';
import type { Principal } from '../fhir/pipeline/principal';
import { ConsentDecision, ConsentStage } from '../fhir/pipeline/pipeline.stages';

/** No consent restriction: no fragment, every row the scopes allow. Replaced by the consent module. */
@Injectable()
export class UnrestrictedConsent extends ConsentStage {
  async decide(_principal: Principal, _interaction: Interaction): Promise<ConsentDecision> {
    return { fragments: [], basis: 'no-consent-policy' };
  }
}
