import { Injectable } from '@nestjs/common';
import { auditRecord } from '../fhir/pipeline/audit-record';
import { RequestContext } from '../common/request-context';
import type { AccessContext } from '../fhir/pipeline/access-context';
import { buildInteraction, Interaction } from '../fhir/pipeline/interaction';
import { AuditStage, AuthorizationStage, ConsentStage } from '../fhir/pipeline/pipeline.stages';
import type { Principal } from '../fhir/pipeline/principal';
import { ResourceTypeHandlers } from '../fhir/pipeline/resource-type-handler';
import { MintOptions, SystemAccess, UNRESTRICTED_SYSTEM_CONTEXTS, UnrestrictedSystemContext } from '../fhir/pipeline/system-access';
import { WriteEvents } from '../fhir/pipeline/write-events';
import { WritePolicies } from '../fhir/pipeline/write-policy';
import { basisOf, clientLookups, interactionWrites, issueAccessContext, NO_LOOKUPS } from './access-issuer';

/** Purposes of use a consent-bounded system context may act for, and the role whose view it takes. */
const PURPOSE_VIEWS: Record<string, Pick<Principal, 'role' | 'clinicalAccess'>> = {
  // A public-health agency's individual-level view: what a client registered with clinical access sees.
  PUBHLTH: { role: 'public-health', clinicalAccess: true },
};

/**
 * Internal work asks for its access here: minted by the pipeline's issuer, audited, and never a raw
 * database connection. `mintFor(purpose)` is the way internal work reads resource content: the
 * consent stage's predicate for that purpose under the region's policy, exactly as a client with
 * that purpose and `system/*.rs` would see. `mint(name)` is for the short list above only.
 */
@Injectable()
export class PipelineSystemAccess extends SystemAccess {
  constructor(
    private readonly audit: AuditStage,
    private readonly consent: ConsentStage,
    private readonly writePolicies: WritePolicies,
    private readonly writeEvents: WriteEvents,
    private readonly authorization: AuthorizationStage,
    private readonly typeHandlers: ResourceTypeHandlers,
  ) {
    super();
  }

  /**
   * A read-only context for background work a client asked for (a Bulk Data export): the stored
   * `principal` is authorized and consent-checked for `interaction` exactly as the same request
   * would be now (scopes, role, consent, per-type rules), so the job sees what the client would
   * see by search, no more. Throws the 401/403 the request would get. Audited once per mint as
   * `on-behalf-of:{work}` with the client as the agent and the access basis of the context.
   */
  async mintAs(principal: Principal, interaction: Interaction, work: string): Promise<AccessContext> {
    if (principal.kind !== 'client') throw new Error('Only a client principal can be acted for');
    const ctx = await this.readOnlyContextFor(principal, interaction);
    await this.recordMint(`on-behalf-of:${work}`, principal, principal, basisOf(ctx));
    return ctx;
  }

  private async readOnlyContextFor(principal: Principal, interaction: Interaction): Promise<AccessContext> {
    const scope = this.authorization.authorize(principal, interaction);
    const decision = await this.consent.decide(principal, interaction);
    const lookups = clientLookups(this.authorization, principal, (lookup) => this.readOnlyContextFor(principal, lookup));
    return issueAccessContext({ principal, read: [...this.typeHandlers.withTypeRules(principal, interaction, decision.fragments), ...scope], write: [], lookups });
  }

  async mint(name: UnrestrictedSystemContext, onBehalfOf?: Principal, options: MintOptions = {}): Promise<AccessContext> {
    if (!Object.hasOwn(UNRESTRICTED_SYSTEM_CONTEXTS, name)) throw new Error(`${String(name)} is not a named unrestricted system context`);
    const principal: Principal = { kind: 'system', clientId: `system:${name}`, scopes: [], ...(onBehalfOf ? { organization: onBehalfOf.organization } : {}) };
    await this.recordMint(name, principal, onBehalfOf, [`system: ${name}`], options.auditWithRequest);
    // Its writes (if any) fire the same write events as a client's: a Consent is materialized whoever writes it.
    return issueAccessContext({ principal, read: [], write: [], lookups: NO_LOOKUPS, system: name, writes: interactionWrites(this.writePolicies, this.writeEvents, principal) });
  }

  /**
   * A read-only context bounded by consent for `purpose` (e.g. PUBHLTH): the fragments the consent
   * stage gives a client of that purpose's role with unrestricted read and search scopes and no
   * organization of its own (so no "own data" bypass). It is not a system context in the storage
   * sense (`ctx.system` unset): cross-organization maintenance (reindex) refuses it.
   */
  async mintFor(purpose: string, onBehalfOf?: Principal): Promise<AccessContext> {
    const view = Object.hasOwn(PURPOSE_VIEWS, purpose) ? PURPOSE_VIEWS[purpose] : undefined;
    if (!view) throw new Error(`No consent-bounded system view is defined for purpose ${purpose}`);
    const name = `purpose-${purpose}`;
    const principal: Principal = { kind: 'system', clientId: `system:${name}`, scopes: ['system/*.rs'], purposeOfUse: purpose, ...view };
    const search = buildInteraction('search-system', { path: '' });
    const decision = await this.consent.decide(principal, search);
    await this.recordMint(name, principal, onBehalfOf, decision.fragments.map((f) => `${f.basis}: ${f.description}`));
    return issueAccessContext({ principal, read: decision.fragments, write: [], lookups: NO_LOOKUPS });
  }

  private async recordMint(name: string, principal: Principal, onBehalfOf: Principal | undefined, basis: string[], withRequest = false): Promise<void> {
    const record = auditRecord({
        kind: 'system-access',
        subtype: name,
        requestId: RequestContext.requestId(),
        principal: onBehalfOf ?? principal,
        outcome: 'success',
        status: 200,
        system: name,
        accessBasis: basis,
        durationMs: 0,
    });
    await (withRequest ? this.audit.recordWithRequest(record) : this.audit.record(record));
  }
}
