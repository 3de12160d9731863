import { Injectable } from '@nestjs/common';
import type { Interaction } from './interaction';
import type { Principal } from './principal';
import { ConsentDecision, ConsentStage } from './pipeline.stages';

/** No consent restriction: the predicate admits every row. Replaced by the consent module. */
@Injectable()
export class UnrestrictedConsent extends ConsentStage {
  async decide(_principal: Principal, _interaction: Interaction): Promise<ConsentDecision> {
    return { predicate: 'TRUE', params: [], basis: 'no-consent-policy' };
  }
}
