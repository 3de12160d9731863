import { Inject, Injectable } from '@nestjs/common';
import type { AccessContext } from '../../fhir/pipeline/access-context';
import { SystemAccess } from '../../fhir/pipeline/system-access';
import { buildInteraction } from '../../fhir/pipeline/interaction';
import type { Principal } from '../../fhir/pipeline/principal';
import { SUBSCRIPTION_CONFIG, SubscriptionConfig } from './subscription-config';

/** A principal's access contexts are reused this long: the minted grant (scopes, role) only, consent is SQL judged at each use. */
const CONTEXT_TTL_MS = 60_000;

/**
 * The access of a Subscription's owning client, for matching and delivery: the client's own
 * search of the type, authorized and consent-checked as that request would be now
 * (`SystemAccess.mintAs`, audited as `on-behalf-of:subscription`), so a subscriber is matched
 * against and sent only what it may read. A context renders the consent decision as SQL over the
 * materialized decisions, so a Consent written meanwhile applies at once; what a context caches
 * is the client's grant, reused for a minute (one mint, one audit record, per client and type
 * per minute instead of per write). Undefined when the client may no longer search the type.
 */
@Injectable()
export class SubscriberAccess {
  private readonly contexts = new Map<string, { ctx: Promise<AccessContext | undefined>; until: number }>();

  constructor(
    private readonly system: SystemAccess,
    @Inject(SUBSCRIPTION_CONFIG) private readonly config: SubscriptionConfig,
  ) {}

  contextOf(principal: Principal, resourceType: string): Promise<AccessContext | undefined> {
    const key = `${principal.clientId}|${principal.organization}|${principal.purposeOfUse}|${principal.scopes.join(' ')}|${resourceType}`;
    const now = Date.now();
    const hit = this.contexts.get(key);
    if (hit && hit.until > now) return hit.ctx;
    const ctx = this.system
      .mintAs(principal, buildInteraction('search-type', { resourceType, path: `/${resourceType}` }), 'subscription')
      .catch(() => undefined);
    // A refusal is not cached for long: a client whose scopes come back is served again soon.
    this.contexts.set(key, { ctx, until: now + CONTEXT_TTL_MS });
    void ctx.then((c) => {
      if (!c) this.contexts.set(key, { ctx, until: now + this.config.cacheMs });
    });
    return ctx;
  }
}
