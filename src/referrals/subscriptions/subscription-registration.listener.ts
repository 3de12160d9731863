import { Inject, Injectable, OnModuleInit } from '@nestjs/common';
import type { Extension, Subscription } from '@medplum/fhirtypes';
import { FhirError } from '../../common/fhir-error';
import type { Principal } from '../../fhir/pipeline/principal';
import { WriteEvent, WriteEvents, WriteListener } from '../../fhir/pipeline/write-events';
import { parseCriteria } from './subscription-criteria';
import { SUBSCRIPTION_CONFIG, SubscriptionConfig } from './subscription-config';
import { endpointRefusal, headerRefusal } from './subscription-endpoint';
import { SubscriptionRegistrations } from './subscription-registration.repository';

/** The write-only HMAC secret, on `Subscription.channel` (docs/referrals.md): stored apart, never in the resource. */
export const SUBSCRIPTION_SECRET_URL = 'http://hie.example.org/fhir/StructureDefinition/subscription-secret';
export const FHIR_JSON_PAYLOAD = 'application/fhir+json';
const MIN_SECRET_LENGTH = 16;

/** What a notification job needs to act as the owner again: never a break-the-glass reason or a token. */
function storedPrincipal(p: Principal): Principal {
  return { kind: 'client', clientId: p.clientId, organization: p.organization, role: p.role, scopes: [...p.scopes], purposeOfUse: p.purposeOfUse };
}

/**
 * Registers a client's rest-hook Subscription, in the write's transaction, before its version is
 * stored (validate phase): refuses what cannot be served (another channel type, a payload other
 * than none or FHIR JSON, criteria that are not a search, an endpoint outside the allow-list),
 * takes the secret extension out of the body (so no read, search, history or export can show it),
 * sets `status` (`active`, or `off` when the client turns it off; `error` is the server's) and
 * keeps the registration row: criteria, endpoint, secret and the owning client's principal.
 * The worker's own status writes (a system context) pass through unchanged.
 */
@Injectable()
export class SubscriptionRegistrationListener implements WriteListener, OnModuleInit {
  readonly name = 'subscription-registration';
  readonly phase = 'validate' as const;
  readonly order = 500;
  readonly resourceTypes = ['Subscription'];

  constructor(
    private readonly events: WriteEvents,
    private readonly registrations: SubscriptionRegistrations,
    @Inject(SUBSCRIPTION_CONFIG) private readonly config: SubscriptionConfig,
  ) {}

  onModuleInit(): void {
    this.events.register(this);
  }

  async handle({ tx, id, after, before, principal }: WriteEvent): Promise<void> {
    if (!after) {
      await this.registrations.remove(tx, id);
      return;
    }
    if (principal.kind === 'system') return;
    // Break-the-glass is one request's emergency access, not a standing feed.
    if (principal.purposeOfUse === 'ETREAT') throw FhirError.forbidden('A Subscription may not be written with break-the-glass (purpose ETREAT)');
    const sub = after as Subscription;
    if (sub.channel?.type !== 'rest-hook') throw new FhirError(422, 'not-supported', `Subscription.channel.type ${sub.channel?.type ?? '(none)'}: this server delivers rest-hook only`, ['Subscription.channel.type']);
    const payload = sub.channel.payload;
    if (payload !== undefined && payload !== FHIR_JSON_PAYLOAD) {
      throw new FhirError(422, 'not-supported', `Subscription.channel.payload ${payload.slice(0, 64)}: absent (no body) or ${FHIR_JSON_PAYLOAD} only`, ['Subscription.channel.payload']);
    }
    const { resourceType, query } = parseCriteria(sub.criteria);
    const refusal = endpointRefusal(sub.channel.endpoint, this.config);
    if (refusal) throw new FhirError(422, 'business-rule', refusal, ['Subscription.channel.endpoint']);
    const badHeader = headerRefusal(sub.channel.header);
    if (badHeader) throw new FhirError(422, 'invalid', badHeader[0], [`Subscription.channel.header[${badHeader[1]}]`]);
    const secret = this.takeSecret(sub);
    const endsAt = sub.end ? new Date(sub.end) : null;
    // R4 `end`: the server turns the Subscription off then. One written already past it is off at once.
    if (endsAt && endsAt.getTime() <= Date.now()) sub.status = 'off';
    else if (sub.status === 'error' || sub.status === 'requested' || sub.status === 'active') sub.status = 'active';
    // A client's write restarts the count: the server says why it failed in `error`, the client may try again.
    delete sub.error;
    await this.registrations.save(tx, {
      id,
      resourceType,
      criteria: query,
      status: sub.status === 'off' ? 'off' : 'active',
      endpoint: sub.channel.endpoint!,
      payload: payload ?? null,
      headers: sub.channel.header ?? [],
      secret,
      principal: storedPrincipal(principal),
      custodianOrg: before && !before.deleted ? (before.custodianOrg ?? null) : (principal.organization ?? null),
      endsAt,
    });
  }

  /** Removes the secret extension from the body (it must not be stored there) and answers its value. */
  private takeSecret(sub: Subscription): string | null {
    const all = sub.channel!.extension ?? [];
    const found = all.filter((e: Extension) => e.url === SUBSCRIPTION_SECRET_URL);
    if (!found.length) return null;
    if (found.length > 1) throw new FhirError(422, 'invalid', 'Subscription.channel carries the secret extension more than once', ['Subscription.channel.extension']);
    const value = found[0].valueString;
    if (typeof value !== 'string' || value.length < MIN_SECRET_LENGTH) {
      throw new FhirError(422, 'invalid', `The secret extension needs a valueString of at least ${MIN_SECRET_LENGTH} characters`, ['Subscription.channel.extension']);
    }
    const rest = all.filter((e: Extension) => e.url !== SUBSCRIPTION_SECRET_URL);
    if (rest.length) sub.channel!.extension = rest;
    else delete sub.channel!.extension;
    return value;
  }
}
