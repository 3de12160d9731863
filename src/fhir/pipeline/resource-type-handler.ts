import { Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import type { FhirError } from '../../common/fhir-error';
import type { AccessContext } from './access-context';
import type { AccessFragment } from './access-predicate';
import type { Interaction, InteractionResult, ReadInteraction } from './interaction';
import type { Principal } from './principal';

/**
 * How a module takes over one resource type's reads, searches and row access (docs/architecture.md,
 * "Per-type handlers"): the audit module answers AuditEvent from its trail. The core asks the
 * registry; it never names a type itself.
 */
export interface ResourceTypeHandler {
  readonly resourceType: string;
  /** A read by id; undefined lets storage answer (with the access rule below applied). */
  read?(ctx: AccessContext, interaction: ReadInteraction, tx: EntityManager): Promise<InteractionResult | undefined>;
  /**
   * Type-level and compartment searches of the type, answered instead of the resource search engine;
   * undefined lets the search engine answer.
   */
  search?(ctx: AccessContext, interaction: Interaction, tx: EntityManager): Promise<InteractionResult | undefined>;
  /** Refuses a create, update, patch or delete of some of the type's ids (the error to answer), before any storage work. */
  refuseChange?(interaction: Interaction): FhirError | undefined;
  /**
   * Which stored rows of the type the principal may read, in place of the consent decision for
   * those rows (other types keep theirs). Rendered at any alias, current or version rows.
   */
  readRule?(principal: Principal): AccessFragment;
  /** What `search` answers, for the CapabilityStatement: exactly these parameters and includes. */
  readonly searchCapability?: { parameters: readonly string[]; includes: readonly string[]; revIncludes: readonly string[] };
}

/** The handlers modules registered, by type; a second handler for one type fails start. */
@Injectable()
export class ResourceTypeHandlers {
  private readonly handlers = new Map<string, ResourceTypeHandler>();

  register(handler: ResourceTypeHandler): void {
    if (this.handlers.has(handler.resourceType)) throw new Error(`A handler for ${handler.resourceType} is already registered`);
    this.handlers.set(handler.resourceType, handler);
  }

  get(resourceType: string | undefined): ResourceTypeHandler | undefined {
    return resourceType === undefined ? undefined : this.handlers.get(resourceType);
  }

  /**
   * The consent fragments with each handled type's own rule for its rows, where the interaction
   * can reach rows of that type: system-level interactions, the type's own, and operations. A
   * type-level interaction on another type reaches them only through includes, chains and `_has`,
   * which need the type-level search right on them (`AccessContext.mayRead`), so its predicate stays
   * as it was (no extra condition on the hot path).
   */
  withTypeRules(principal: Principal, interaction: Interaction, consent: readonly AccessFragment[]): readonly AccessFragment[] {
    const rules = [...this.handlers.values()]
      .filter((h) => h.readRule && (interaction.kind === 'operation' || !interaction.resourceType || interaction.resourceType === h.resourceType))
      .map((h) => ({ type: h.resourceType, rule: h.readRule!(principal) }));
    if (!rules.length) return consent;
    const description = rules.map((r) => `${r.type}: ${r.rule.description}`).join('; ');
    const render: AccessFragment['render'] = (alias, bind, row) => {
      const others = consent.map((f) => `(${f.render(alias, bind, row)})`).join(' AND ') || 'TRUE';
      const types = rules.map((r) => bind.bind(r.type)).join(', ');
      const own = rules.map((r) => `(${alias}.resource_type = ${bind.bind(r.type)} AND (${r.rule.render(alias, bind, row)}))`);
      return [`(${alias}.resource_type NOT IN (${types}) AND ${others})`, ...own].join(' OR ');
    };
    if (!consent.length) return [{ basis: 'policy', description, render }];
    // One fragment in the consent fragments' place, so the audit basis keeps their lines; it judges
    // the row kinds every one of them judges.
    const limited = consent.filter((f) => f.rows);
    const rows = limited.length ? (['current', 'version'] as const).filter((k) => limited.every((f) => f.rows!.includes(k))) : undefined;
    return [{ basis: consent[0].basis, description: [...consent.map((f) => f.description), description].join('; '), render, ...(rows ? { rows } : {}) }];
  }
}
